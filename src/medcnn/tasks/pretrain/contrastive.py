"""Self-supervised pretraining of a classification backbone (issue #6): contrastive (SimCLR-style).

Two strongly augmented views of every unlabeled image go through the network (its last layer
becomes the first projection layer) and a small projection head; MONAI's ContrastiveLoss (NT-Xent)
pulls the two views of an image together and pushes other images away. Augmentation runs on
whole batches as tensors (kornia), so both views cost no worker processes. The checkpoint is
chosen on the contrastive loss of held-out images (the pool's validation splits) with fixed views.
A run folder of this task is a ``--pretrained`` source for any classifier of the same network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from medcnn.data.classification import ClassificationData, load_classification
from medcnn.errors import InputError
from medcnn.infer.predictor import to_float
from medcnn.models import network_from_plan
from medcnn.plan import AugmentConfig, Plan
from medcnn.tasks.base import TaskModule
from medcnn.transforms.augment import BatchAugment

VIEWS = AugmentConfig(preset="custom", p=0.8, flip=True, rotate_deg=20.0, translate=0.1, scale=[0.7, 1.3],
                      brightness=0.3, contrast=0.3, blur=1.0, noise=0.05, gamma=0.3)


class ContrastiveTask(TaskModule):
    def __init__(self, plan: dict, temperature: float = 0.2):
        super().__init__()
        self.save_hyperparameters({"plan": plan})
        self.plan = Plan.from_dict(plan)
        self.net = network_from_plan(self.plan, self.plan.num_classes, mean=self.plan.preprocessing.mean,
                                     std=self.plan.preprocessing.std)  # num_classes = projection width
        d = self.plan.num_classes
        self.proj = nn.Sequential(nn.ReLU(), nn.Linear(d, d))
        self.views = BatchAugment(VIEWS, self.plan.spatial_dims)
        self.temperature = temperature
        self.epoch_summary: dict[str, float] = {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x.contiguous()).float())

    def contrastive(self, x: torch.Tensor) -> torch.Tensor:
        from monai.losses import ContrastiveLoss

        with torch.no_grad():
            v1, v2 = self.views(x.clone()), self.views(x.clone())
        return ContrastiveLoss(temperature=self.temperature)(self.embed(v1), self.embed(v2))

    def step_loss(self, batch) -> torch.Tensor:
        return self.contrastive(to_float(batch[0]))

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_n = 0.0, 0
        self._rng_state = torch.get_rng_state()
        torch.manual_seed(12345)  # the same views every epoch: comparable losses

    def validation_step(self, batch, batch_idx):
        x = to_float(batch[0])
        if len(x) < 2:
            return
        loss = self.contrastive(x)
        self._val_sum += float(loss) * len(x)
        self._val_n += len(x)

    def on_validation_epoch_end(self) -> None:
        torch.set_rng_state(self._rng_state)
        val = self._val_sum / max(self._val_n, 1)
        self.log("val/score", -val)
        self.epoch_summary = {"train_loss": self.mean_train_loss, "val_contrastive": val}

    def extra_parameters(self) -> list[dict]:
        return [{"params": list(self.proj.parameters()), "name": "projection"}]


def pooled_images(sources: list[str], size: int, max_per_source: int = 0, seed: int = 0,
                  channels: int | None = None):
    """Unlabeled images of ``size`` px, as a ClassificationData with one dummy class: the train and
    val splits of classification datasets (never their test splits), and every image of a folder
    without class folders (unlabelled images; a tenth of them validates). ``channels``: 3 keeps colour
    (grey sources repeated), 1 makes grey; default colour when every source is colour."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    loaded = [(src, _unlabelled_folder(src, size, seed) or load_classification(src, input_size=[size, size]))
              for src in sources]
    if channels is None:
        channels = 3 if all(ds.channels == 3 for _, ds in loaded) else 1
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    counts = {}
    for src, ds in loaded:
        if ds.spatial_dims != 2:
            raise InputError("pretraining pools 2D images; this dataset is 3D", src)
        for split in ("train", "val"):
            x = ds.images.get(split)
            if x is None or not len(x):
                continue
            if max_per_source and len(x) > max_per_source:
                x = x[np.sort(rng.choice(len(x), max_per_source, replace=False))]
            t = torch.as_tensor(x).float()
            if t.shape[1] != channels:
                t = t.mean(1, keepdim=True) if channels == 1 else t[:, :1].expand(-1, channels, -1, -1)
            if tuple(t.shape[-2:]) != (size, size):
                t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            parts[split].append(t.round().clamp(0, 255).to(torch.uint8).numpy())
            counts[f"{ds.name}/{split}"] = len(x)
    if not parts["train"]:
        raise InputError("no training images in the pretraining sources", ", ".join(sources))
    images = {k: np.concatenate(v) for k, v in parts.items() if v}
    labels = {k: np.zeros(len(v), np.int64) for k, v in images.items()}
    name = "pool-" + "+".join(sorted({str(s).rstrip("/").rsplit("/", 1)[-1].removesuffix(".npz") for s in sources}))
    data = ClassificationData(name=name, images=images, labels=labels, label_type="multiclass",
                              class_names=["image"], source=", ".join(sources))
    return data, counts


def _unlabelled_folder(src: str, size: int, seed: int) -> ClassificationData | None:
    """A folder of images without class folders (e.g. a challenge's unlabelled test images) as
    train / val (a seeded tenth) of one dummy class; None for anything else."""
    from medcnn.data.preprocess import image_to_array
    from medcnn.io import read_image
    from medcnn.io.inputs import is_image_file

    p = Path(src)
    if not p.is_dir() or any(d.is_dir() for d in p.iterdir()):
        return None
    files = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f))
    if not files:
        raise InputError("no images found in this folder", p)
    first = read_image(files[0])
    channels = 3 if first.channels >= 3 else 1
    x = np.stack([image_to_array(read_image(f), [size, size], channels, "uint8", path=f) for f in files])
    val = np.zeros(len(x), bool)
    val[np.random.default_rng(seed).choice(len(x), max(1, len(x) // 10), replace=False)] = True
    return ClassificationData(name=p.name, images={"train": x[~val], "val": x[val]},
                              labels={"train": np.zeros((~val).sum(), np.int64), "val": np.zeros(val.sum(), np.int64)},
                              label_type="multiclass", class_names=["image"], source=str(p))
