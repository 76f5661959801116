"""The plan of self-supervised pretraining: the classification planner's network for the image
size (so the backbone fits the classifiers medcnn plans), a contrastive projection as its head."""
from __future__ import annotations

from medcnn.plan import AugmentConfig, OptimConfig, Plan, Preprocessing
from medcnn.planning.classify import model_for

PROJECTION = 128
EPOCHS, BATCH = 30, 256
MAX_MINUTES = 30.0  # the epochs are cut to fit (the pooled MedMNIST 2D sets are ~60 000 images)


def pretrain_plan(data, size: int, epochs: int = EPOCHS) -> Plan:
    """``data``: the pooled unlabeled images (``tasks.pretrain.contrastive.pooled_images``)."""
    return Plan(task="pretrain", data=data.source, label_type="multiclass", num_classes=PROJECTION, class_names=[],
                spatial_dims=2,
                preprocessing=Preprocessing(input_size=[size, size], channels=data.channels, normalization="uint8",
                                            mean=[0.5] * data.channels, std=[0.5] * data.channels),
                model=model_for(2, size), optim=OptimConfig(name="adamw", lr=2e-3, weight_decay=1e-4,
                                                            scheduler="onecycle"),
                augment=AugmentConfig(preset="none", p=0.0), batch_size=BATCH, epochs=epochs, max_minutes=MAX_MINUTES,
                val_metric="loss",
                fingerprint={"pool": data.source, "n": {k: int(len(v)) for k, v in data.images.items()}}).validate()


RESTORE_MINUTES = {2: 15.0, 3: 20.0}


def restoration_plan(data, data_arg: str) -> Plan:
    """Restoration pretraining on a segmentation dataset (``tasks.pretrain.restoration``): the network, patches,
    spacing, normalisation and augmentation of the segmentation plan for ``data``, so its run seeds
    that plan's U-Net whole; it outputs the image channels."""
    import dataclasses

    from medcnn.planning.segment import default_plan

    seg = default_plan(data, data_arg)
    return dataclasses.replace(seg, task="pretrain", pretext="restoration", num_classes=seg.preprocessing.channels,
                               class_names=[], max_minutes=RESTORE_MINUTES[seg.spatial_dims],
                               val_metric="loss").validate()
