"""The plan: every setting of a run, as dataclasses saved to YAML.

``medcnn plan`` writes a plan from a dataset fingerprint; the user may edit the YAML; CLI flags
override single fields (``--set optim.lr=3e-4``); the resolved plan is saved in every run
folder, so a run can be reproduced from its folder alone. No code lives in a plan.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from medcnn.errors import ConfigError
from medcnn.plan_migrations import SCHEMA_VERSION, migrate, moved_field
from medcnn.utils.files import atomic_write_text
from medcnn.utils.plugins import import_plugins

LABEL_TYPES = ("binary", "multiclass", "multilabel")
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
TRANSFER_STRATEGIES = ("finetune", "linear-probe", "freeze-then-unfreeze")
# task pretrain: contrastive (a classification backbone, 2D image pools) | restoration (the planned
# segmentation U-Net restores corrupted patches of a segmentation dataset's images, 2D or 3D)
PRETEXTS = ("contrastive", "restoration")


@dataclass(frozen=True)
class TaskSchema:
    """What the plan knows of a task: the plan sections its plans use (``segment``, ``enhance``), the
    extra sections of each pretext (a task with pretexts needs one), whether it trains ensembles, and
    a check of its own settings in ``Plan.options`` (tasks from plugins)."""

    sections: tuple[str, ...] = ()
    pretexts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ensemble: bool = False
    check: Callable[["Plan"], None] | None = None
    normalizations: tuple[str, ...] = ()  # its normalisers, the default first (() : as its sections say)


TASK_SCHEMAS: dict[str, TaskSchema] = {
    "classify": TaskSchema(ensemble=True),
    "segment": TaskSchema(sections=("segment",), ensemble=True),
    "enhance": TaskSchema(sections=("enhance",)),
    "pretrain": TaskSchema(pretexts={"contrastive": (), "restoration": ("segment",)}),
}
SECTIONS = ("segment", "enhance")  # the task-specific sections of a plan
# the normalisers (medcnn.transforms.normalize) of plans with a segment or enhance section, and of the
# others (whole images to [0, 1]); the first is the default, with its parameters
SECTION_NORMALIZATIONS = {"segment": (("zscore", "ct", "rgb", "none"), {}),
                          "enhance": (("window", "percentile_affine"), {"window": [0.0, 1.0]})}
IMAGE_NORMALIZATIONS = (("uint8", "percentile_clip"), {})


def register_task_schema(name: str, schema: TaskSchema) -> None:
    """Make plans of task ``name`` valid (``medcnn.tasks.register_task`` calls it for plugin tasks)."""
    TASK_SCHEMAS[name] = schema
SPLIT_KEYS = ("test_fraction", "val_fraction", "fold", "folds", "seed", "train_fraction", "subset_seed")  # segment.split


@dataclass
class Preprocessing:
    """How an image becomes the network's input; stored with the model so predict matches training."""

    input_size: list[int] = field(default_factory=lambda: [28, 28])  # (H, W) or (D, H, W): images are resized to it
    channels: int = 1  # input channels (1 grey, 3 colour, or a segmentation dataset's sequences)
    # intensity normalisation, one of medcnn.transforms.normalize (the same in training and at predict time):
    # classify: uint8 (pixels / 255: 8-bit sources such as MedMNIST and PNG) | percentile_clip (clip to the
    # image's 0.5-99.5 percentiles, scale to [0, 1]); segment: zscore (per image, over its nonzero voxels:
    # MRI) | ct (clip, then the dataset's mean/std) | rgb (per image and channel) | none; enhance (affine,
    # nothing clipped, undone after restoration): window (a fixed physical window: CT, HU comparable
    # across scans) | percentile_affine (each image's own 0.5-99.5 percentiles: MRI, photos)
    normalization: str = ""  # "": the default of the plan (Plan.normalizations)
    # its parameters: ct {clip: [lo, hi] HU, mean, std}; window {window: [lo, hi], floor (default -1024 HU)}
    normalization_args: dict[str, Any] = field(default_factory=dict)
    mean: list[float] = field(default_factory=lambda: [0.5])  # per channel, after normalisation (ImageNet's with its weights)
    std: list[float] = field(default_factory=lambda: [0.5])  # per channel, after normalisation


@dataclass
class ModelConfig:
    name: str = "resnet18"  # network (`medcnn models` lists them)
    # builder arguments, e.g. stem_stride, widen_factor (see `medcnn models`)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled weight decay (adamw)
    scheduler: str = "onecycle"  # onecycle | cosine | poly (nnU-Net's (1 - step/steps)^0.9) | multistep | none
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # multistep, as fractions of epochs
    momentum: float = 0.9  # sgd (Nesterov when > 0); nnU-Net trains with 0.99
    # clip the gradients' global L2 norm to this before each step (0: off); bounds the rare runaway step
    # of a network without normalisation layers (the enhancement planner's default: 0.5)
    grad_clip: float = 0.0


@dataclass
class AugmentConfig:
    """Batched augmentation applied to whole training batches as tensors."""

    preset: str = "light"  # none | light | default | heavy (fills the fields below unless given)
    p: float = 0.5  # probability of each transform per image
    flip: bool = False  # mirror left-right and up-down
    rotate_deg: float = 10.0  # rotation range (+- degrees)
    translate: float = 0.05  # shift range (fraction of the size)
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])  # zoom range
    brightness: float = 0.1  # brightness change range
    contrast: float = 0.1  # contrast change range
    # medical-specific and further transforms (strengths; 0 = off), each applied with probability p,
    # see medcnn.transforms.artifacts: elastic deformation (joint with masks), blur, noise, gamma,
    # MR bias field / ghosting / motion, CT window jitter
    elastic: float = 0.0
    blur: float = 0.0  # Gaussian blur
    noise: float = 0.0  # Gaussian noise
    gamma: float = 0.0  # gamma (intensity curve) change
    bias_field: float = 0.0  # MR bias field
    ghosting: float = 0.0  # MR ghosting (k-space)
    motion: float = 0.0  # MR motion (k-space)
    window_jitter: float = 0.0  # CT window jitter
    # classification only: MixUp / CutMix of images and labels within each batch, as the alpha of
    # the Beta distribution of the mixing weight (0 = off; both on: one of the two per batch)
    mixup: float = 0.0
    cutmix: float = 0.0  # CutMix's alpha (0 = off)


# The named augmentation presets: the AugmentConfig fields each one sets (the rest keep their defaults).
AUGMENT_PRESETS: dict[str, dict] = {
    "none": dict(p=0.0),
    "light": dict(p=0.5, flip=False, rotate_deg=10.0, translate=0.05, scale=[0.9, 1.1], brightness=0.1, contrast=0.1),
    "default": dict(p=0.8, flip=True, rotate_deg=15.0, translate=0.1, scale=[0.85, 1.15], brightness=0.15, contrast=0.15),
    "heavy": dict(p=1.0, flip=True, rotate_deg=25.0, translate=0.15, scale=[0.75, 1.25], brightness=0.25, contrast=0.25),
}


def augment_preset(name: str) -> AugmentConfig:
    """The AugmentConfig of a named preset (what `medcnn plan` writes)."""
    if name not in AUGMENT_PRESETS:
        raise ConfigError(f"unknown augmentation preset {name!r} (choose from {', '.join(AUGMENT_PRESETS)})")
    base = AugmentConfig(preset=name, **{k: v for k, v in AUGMENT_PRESETS[name].items()})
    if name == "none":
        base.flip, base.rotate_deg, base.translate, base.scale = False, 0.0, 0.0, [1.0, 1.0]
        base.brightness = base.contrast = 0.0
    return base


# The degradation models of enhancement (EnhanceConfig.degradation), implemented in medcnn.transforms.degrade.
NOISE_DEGRADATIONS = ("gaussian", "rician", "speckle")
CT_DEGRADATIONS = ("lowdose-ct", "sparse-view-ct")
DEGRADATIONS = NOISE_DEGRADATIONS + ("downsample",) + CT_DEGRADATIONS
NO_DEGRADATION = "none"  # the images are already degraded (self-supervised training on noisy scans)


def check_degradation(kind: str, level, window=(0.0, 1.0)) -> None:
    """Raise ConfigError unless ``kind``, ``level`` (one value or [lo, hi]) and the intensity
    ``window`` (lo, hi) describe a degradation model."""
    if kind not in DEGRADATIONS + (NO_DEGRADATION,):
        raise ConfigError(f"unknown degradation {kind!r} (one of {', '.join(DEGRADATIONS)}, or none)")
    if len(level) not in (1, 2) or min(level) <= 0:
        raise ConfigError(f"degradation level must be one positive value or a range [lo, hi], got {list(level)}")
    if kind == "downsample" and any(v not in (2, 3, 4) for v in level):
        raise ConfigError(f"downsample factor must be 2, 3 or 4, got {list(level)}")
    if window[1] <= window[0]:
        raise ConfigError(f"intensity window must have lo < hi, got {list(window)}")


@dataclass
class TransferConfig:
    """Start from pretrained weights: what to load and how to fine-tune it."""

    # a weights file (torchvision/timm state dict, checkpoint), a run folder, or a backbone name; "" = from scratch
    pretrained: str = ""
    # finetune: train everything; linear-probe: train only the new tensors (the head), the pretrained
    # ones frozen (their batch-norm statistics too); freeze-then-unfreeze: linear probe for
    # unfreeze_epoch epochs, then everything
    strategy: str = "finetune"
    unfreeze_epoch: int = 1  # freeze-then-unfreeze: the epoch from which the whole network trains
    backbone_lr: float = 1.0  # learning-rate multiplier of the pretrained tensors (discriminative rates)
    inflate: bool = True  # 2D kernels may seed a 3D network (repeated along the new axis / depth)
    # tensors without a fitting source (other than the stem, the head, the input normalisation) are an
    # error unless partial: true (then they train from scratch, listed in the run's transfer.json)
    partial: bool = False


@dataclass
class SegmentConfig:
    """Segmentation settings (task: segment), chosen from the dataset fingerprint like nnU-Net's plans."""

    patch_size: list[int] = field(default_factory=lambda: [64, 64, 64])  # training patch size (voxels, or pixels in 2D)
    # resample every case to this voxel size (mm) before training / inference; [] keeps each case's grid
    target_spacing: list[float] = field(default_factory=list)
    fg_oversample: float = 0.33  # fraction of patches centred on a random foreground voxel
    patches_per_epoch: int = 250 * 8  # training patches per epoch (batches x batch size)
    sw_overlap: float = 0.5  # sliding-window overlap at validation and inference
    # sliding-window size at validation and inference ([] = patch_size): the fully convolutional U-Net
    # may see a larger window than it trained on, so a whole small case takes one window, not eight
    infer_patch_size: list[int] = field(default_factory=list)
    tta_flips: bool = False  # average predictions over mirrorings (each spatial axis) at inference
    # > 0: also average over copies of the case moved by this many voxels along each axis (2**dims views)
    tta_shift: int = 0
    # spatial axes (0 = first) along which mirroring keeps the labels right: training mirrors (augment.flip)
    # and inference averages mirrored views only along these. The planner drops an axis along which
    # the label classes lie in a fixed order (hippocampus: anterior before posterior)
    mirror_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    # none | largest_component (keep each label's largest component) | fill_holes | largest_component+fill_holes;
    # `evaluate` picks the best on the validation cases (RUN/postprocess.json)
    postprocess: str = "none"
    use_fov: bool = False  # restrict loss and metrics to the field-of-view mask (DRIVE-style data)
    # tolerance (mm) of the normalised surface Dice that `evaluate` reports, per label name; a label
    # not named here: one voxel (the case's largest spacing). Fix these before looking at test results.
    nsd_tolerance_mm: dict[str, float] = field(default_factory=dict)
    val_every: int = 1  # validate (sliding windows over whole val cases) every N epochs
    # test_fraction, val_fraction, fold (k of folds: k-fold cross-validation; cv with ensemble: k > 1 trains
    # one member per fold), seed (of the split); train_fraction < 1 trains on that
    # share of the training cases (at least one), drawn with subset_seed (default: the plan's seed; an
    # ensemble's members keep the run's): label-efficiency studies
    split: dict[str, Any] = field(default_factory=lambda: {"test_fraction": 0.2, "val_fraction": 0.2, "fold": None})

    def _check_fold(self, split: dict[str, Any], ensemble: int) -> None:
        """``fold``: None (a ``val_fraction`` split), k in 0..folds-1, or ``cv`` (an ensemble with one member per fold)."""
        fold, folds = split.get("fold"), split.get("folds")
        if fold == "cv":
            if ensemble < 2:
                raise ConfigError("segment.split.fold: cv trains one member per fold; set ensemble to the number of "
                                  "folds (e.g. --set ensemble=5)")
            if folds is not None and int(folds) != ensemble:
                raise ConfigError(f"segment.split.fold: cv has one fold per member: folds ({folds}) must equal "
                                  f"ensemble ({ensemble})")
        elif fold is not None:
            n = int(folds if folds is not None else 5)
            if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n or n < 2:
                raise ConfigError(f"segment.split.fold must be empty, cv, or a fold 0..{n - 1} of folds: {n}; got {fold!r}")

    def check(self, plan: "Plan") -> None:
        """Refuse settings that cannot work (``Plan.validate`` calls it for the plans that use this section)."""
        if len(self.patch_size) != plan.spatial_dims or min(self.patch_size) < 1:
            raise ConfigError(f"segment.patch_size needs {plan.spatial_dims} positive values, got {self.patch_size}")
        if self.infer_patch_size and len(self.infer_patch_size) != plan.spatial_dims:
            raise ConfigError(f"segment.infer_patch_size needs {plan.spatial_dims} values or [], got {self.infer_patch_size}")
        if self.target_spacing and len(self.target_spacing) != plan.spatial_dims:
            raise ConfigError(f"segment.target_spacing needs {plan.spatial_dims} values or [], got {self.target_spacing}")
        unknown = set(self.split) - set(SPLIT_KEYS)
        if unknown:
            raise ConfigError(f"segment.split: unknown {', '.join(sorted(unknown))} (known: {', '.join(SPLIT_KEYS)})")
        if not 0.0 < float(self.split.get("train_fraction", 1.0)) <= 1.0:
            raise ConfigError(f"segment.split.train_fraction must be in (0, 1], got {self.split['train_fraction']}")
        self._check_fold(self.split, plan.ensemble)
        if not 0 <= self.tta_shift < min(window_of(self)):
            raise ConfigError(f"segment.tta_shift must be 0 (off) or a number of voxels below the window, "
                              f"got {self.tta_shift}")
        if any(not 0 <= a < 3 for a in self.mirror_axes):
            raise ConfigError(f"segment.mirror_axes are spatial axes 0, 1 or 2, got {self.mirror_axes}")
        modes = ("none", "largest_component", "fill_holes", "largest_component+fill_holes")
        if self.postprocess not in modes:
            raise ConfigError(f"segment.postprocess must be one of {modes}, got {self.postprocess!r}")
        names = set(plan.class_names[1:]) if plan.class_names else None
        for name, tol in self.nsd_tolerance_mm.items():
            if names is not None and name not in names:
                raise ConfigError(f"segment.nsd_tolerance_mm names {name!r}, not a label of the plan ({', '.join(sorted(names))})")
            if not float(tol) > 0:
                raise ConfigError(f"segment.nsd_tolerance_mm[{name!r}] must be a positive distance in mm, got {tol}")


def window_of(seg: "SegmentConfig") -> list[int]:
    """The sliding-window size of validation and inference."""
    return list(seg.infer_patch_size or seg.patch_size)


# segmentation settings that change only how a trained network predicts: a run's plan.yaml overrides
# the ones its checkpoint was trained with (edit them there to change predict / evaluate / serve)
INFERENCE_FIELDS = ("tta_flips", "tta_shift", "infer_patch_size", "sw_overlap")


@dataclass
class EnhanceConfig:
    """Enhancement settings (task: enhance): what degradation the network learns to undo (intensities
    are normalised by ``preprocessing.normalization``: affine, no clipping, so physical units come back exactly)."""

    # gaussian | rician | speckle | downsample | lowdose-ct | sparse-view-ct (medcnn.transforms.degrade);
    # none: the images themselves are noisy (with mode: noise2void)
    degradation: str = "gaussian"
    # one value, or [lo, hi]: a level drawn per image (one blind model for the range). gaussian / rician /
    # speckle: sigma in normalised units; downsample: factor; lowdose-ct: photons per detector bin;
    # sparse-view-ct: number of views
    level: list[float] = field(default_factory=lambda: [25 / 255])
    modality: str = ""  # from the fingerprint (CT: window in HU)
    patch_size: list[int] = field(default_factory=lambda: [64, 64])  # training patch size (pixels)
    patches_per_epoch: int = 4096  # training patches per epoch
    # [lo, hi]: each training patch is its window zoomed by a factor drawn log-uniformly from this range
    # (2: a quarter of the pixels, upsampled, as a scan at half the pixel size shows the same anatomy).
    # For scans at a finer or coarser pixel size than the training images; [1, 1]: patches as they are
    zoom: list[float] = field(default_factory=lambda: [1.0, 1.0])
    # supervised: learn degraded -> clean; noise2void: blind-spot training on the (degraded) images
    # alone, for users who have only noisy scans (no clean targets are used)
    mode: str = "supervised"  # supervised | noise2void
    blind_spot_fraction: float = 0.02  # noise2void: share of pixels masked per patch
    # more clean images for training only (folders / files, any modality, normalised as above): they
    # teach the image prior when the data itself has few images; never used for validation or test
    extra_train: list[str] = field(default_factory=list)
    extra_share: float = 0.5  # fraction of training patches drawn from extra_train
    residual: bool = True  # the network predicts the correction added to its input
    ct_views: int = 360  # CT degradations: projection angles of the full-dose scan
    loss: str = "l1"  # l1 | mse
    # shares of the sources (scans) held out for test and validation; a single volume is split by slabs
    split: dict[str, Any] = field(default_factory=lambda: {"test_fraction": 0.2, "val_fraction": 0.1})

    def check(self, plan: "Plan") -> None:
        """Refuse settings that cannot work (``Plan.validate`` calls it for the plans that use this section)."""
        check_degradation(self.degradation, tuple(self.level))
        if len(self.patch_size) != plan.spatial_dims or min(self.patch_size) < 8:
            raise ConfigError(f"enhance.patch_size needs {plan.spatial_dims} values >= 8, got {self.patch_size}")
        if self.degradation in ("lowdose-ct", "sparse-view-ct") and plan.preprocessing.normalization != "window":
            raise ConfigError(f"{self.degradation} simulates the scanner in HU: it needs preprocessing.normalization: "
                              "window (with the HU window)")
        if self.mode not in ("supervised", "noise2void"):
            raise ConfigError(f"enhance.mode must be supervised or noise2void, got {self.mode!r}")
        if self.degradation == "none" and self.mode != "noise2void":
            raise ConfigError("enhance.degradation: none (the images are the noisy data) needs enhance.mode: noise2void")
        if not 0.0 <= self.extra_share < 1.0:
            raise ConfigError(f"enhance.extra_share must be in [0, 1), got {self.extra_share}")
        if self.loss not in ("l1", "mse"):
            raise ConfigError(f"enhance.loss must be l1 or mse, got {self.loss!r}")
        if len(self.zoom) != 2 or not 0.25 <= self.zoom[0] <= self.zoom[1] <= 4.0:
            raise ConfigError(f"enhance.zoom must be [lo, hi] with 0.25 <= lo <= hi <= 4, got {self.zoom}")
        if plan.tta == "scale":
            raise ConfigError("tta: scale zooms the input, which changes its noise; a restoration model "
                              "averages over none, flip or dihedral (2D) views")
        if self.zoom != [1.0, 1.0] and self.degradation in ("lowdose-ct", "sparse-view-ct"):
            raise ConfigError(f"enhance.zoom: {self.degradation} simulates the scanner on whole slices at their "
                              "own pixel size; zoomed patches would change the physics (leave zoom at [1, 1])")


@dataclass
class Plan:
    # which fields this plan has (medcnn.plan_migrations); older plans are migrated when loaded
    schema_version: int = SCHEMA_VERSION
    task: str = "classify"  # classify | segment | enhance | pretrain | a plugin's task
    data: str = ""  # the dataset the plan was made for
    label_type: str = "multiclass"  # binary | multiclass | multilabel (classification)
    num_classes: int = 2  # classes (or labels, segmentation)
    class_names: list[str] = field(default_factory=list)  # class (or label) names, in output order
    spatial_dims: int = 2  # 2 or 3
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 128  # training batch (all processes together)
    epochs: int = 30  # training epochs (cut by max_minutes)
    # wall-time budget of training in minutes (0: none). The trainer times a few steps first and
    # trains min(epochs, what fits) epochs, so the learning-rate schedule still completes
    max_minutes: float = 0.0
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0 = off)
    # per-class weights of the cross-entropy (single-label tasks); [] = unweighted.
    # planning.balanced_class_weights gives n / (k * n_c), i.e. every class counts equally
    class_weights: list[float] = field(default_factory=list)
    seed: int = 0  # seed of weights, data order and augmentation
    # >1: train this many members (seeds seed, seed+1000, ...) and average their probabilities;
    # the planner uses it for small datasets, where one model's checkpoint choice is noisy
    ensemble: int = 1
    # test-time augmentation at predict/evaluate: none | flip | dihedral (2D, 8 rotations/mirrors) |
    # scale (classification: the input and its copies zoomed by 0.9 and 1.1); enhancement averages the
    # restored views mapped back (self-ensemble: 8x the time for dihedral);
    # the planner uses the symmetries the training augmentation assumed
    tta: str = "none"
    precision: str = "auto"  # auto | 32 | bf16-mixed | 16-mixed (auto: bf16 where it is safe and faster)
    # exponential moving average of the weights, decay per optimizer step (0: off, e.g. 0.998), warmed
    # up as (1 + n) / (10 + n); validation, the saved checkpoints and predictions use the averaged weights
    ema_decay: float = 0.0
    threads: int = 0  # 0: torch's default
    val_metric: str = "auc"  # what validation maximises to choose the checkpoint (auc, acc, dice, psnr, loss)
    plugins: list[str] = field(default_factory=list)  # modules imported first (register models)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    pretext: str = "contrastive"  # task: pretrain only (PRETEXTS)
    options: dict[str, Any] = field(default_factory=dict)  # a plugin task's own settings (TaskSchema.check)
    segment: SegmentConfig = field(default_factory=SegmentConfig)  # task: segment only
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)  # task: enhance only
    fingerprint: dict[str, Any] = field(default_factory=dict)  # informational, from `medcnn plan`

    def __post_init__(self) -> None:
        """An empty ``preprocessing.normalization`` takes the task's default."""
        if not self.preprocessing.normalization:
            names, args = self.normalizations
            self.preprocessing = dataclasses.replace(self.preprocessing, normalization=names[0],
                                                     normalization_args=dict(args))

    @property
    def normalizations(self) -> tuple[tuple[str, ...], dict[str, Any]]:
        """(the normalisers this plan may use, the default's parameters): its task's, else those of its
        sections (restoration pretraining: the segmentation ones), else whole images to [0, 1]."""
        if self.schema.normalizations:
            return self.schema.normalizations, {}
        return next((SECTION_NORMALIZATIONS[s] for s in self.sections if s in SECTION_NORMALIZATIONS),
                    IMAGE_NORMALIZATIONS)

    def _check_normalization(self) -> None:
        """The task's normalisers (their parameters are checked when the normaliser is built)."""
        names = self.normalizations[0]
        pre = self.preprocessing
        if pre.normalization not in names:
            raise ConfigError(f"preprocessing.normalization of a {self.task} plan must be one of {', '.join(names)}, "
                              f"got {pre.normalization!r}")

    def validate(self) -> "Plan":
        if self.task not in TASK_SCHEMAS and self.plugins:  # a plugin's task: its module registers it
            import_plugins(self.plugins)
        if self.task not in TASK_SCHEMAS:
            raise ConfigError(f"task {self.task!r} is not available (available: {', '.join(sorted(TASK_SCHEMAS))}); "
                              "a plugin task needs its plugin: medcnn --plugin MODULE, or $MEDCNN_PLUGINS")
        schema = self.schema
        if schema.pretexts and self.pretext not in schema.pretexts:
            raise ConfigError(f"pretext must be one of {', '.join(schema.pretexts)}, got {self.pretext!r}")
        for section in self.sections:  # the task's own settings (SegmentConfig.check, EnhanceConfig.check)
            getattr(self, section).check(self)
        self._check_normalization()
        if self.label_type not in LABEL_TYPES:
            raise ConfigError(f"label_type must be one of {LABEL_TYPES}, got {self.label_type!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if len(self.preprocessing.input_size) != self.spatial_dims:
            raise ConfigError(f"preprocessing.input_size needs {self.spatial_dims} values, "
                              f"got {self.preprocessing.input_size}")
        for name, v in (("epochs", self.epochs), ("batch_size", self.batch_size), ("num_classes", self.num_classes),
                        ("ensemble", self.ensemble)):
            if v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v}")
        if self.ensemble > 1 and not schema.ensemble:
            able = " and ".join(n for n, t in TASK_SCHEMAS.items() if t.ensemble)
            raise ConfigError(f"ensemble: {self.ensemble} is for {able} plans, not {self.task}")
        if self.class_weights and (len(self.class_weights) != self.num_classes or min(self.class_weights) <= 0
                                   or self.label_type == "multilabel"):
            raise ConfigError(f"class_weights needs {self.num_classes} positive numbers (single-label tasks only), "
                              f"got {self.class_weights}")
        if self.tta not in ("none", "flip", "dihedral", "scale"):
            raise ConfigError(f"tta must be none, flip, dihedral or scale, got {self.tta!r}")
        if self.tta == "dihedral" and self.spatial_dims != 2:
            raise ConfigError("tta: dihedral is for 2D images; use flip or none for 3D")
        if min(self.augment.mixup, self.augment.cutmix) < 0:
            raise ConfigError(f"augment.mixup and augment.cutmix are Beta alphas >= 0 (0: off), "
                              f"got {self.augment.mixup}, {self.augment.cutmix}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if self.max_minutes < 0:
            raise ConfigError(f"max_minutes must be >= 0 (0: no time budget), got {self.max_minutes}")
        if self.optim.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.optim.lr}")
        if self.optim.grad_clip < 0:
            raise ConfigError(f"optim.grad_clip must be >= 0 (0: off), got {self.optim.grad_clip}")
        tr = self.transfer
        if tr.strategy not in TRANSFER_STRATEGIES:
            raise ConfigError(f"transfer.strategy must be one of {', '.join(TRANSFER_STRATEGIES)}, got {tr.strategy!r}")
        if tr.backbone_lr < 0 or tr.unfreeze_epoch < 0:
            raise ConfigError("transfer.backbone_lr and transfer.unfreeze_epoch must be >= 0")
        if tr.strategy != "finetune" and not tr.pretrained:
            raise ConfigError(f"transfer.strategy {tr.strategy!r} needs transfer.pretrained (weights to keep)")
        if schema.check is not None:
            schema.check(self)
        return self

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for other in SECTIONS:
            if other not in self.sections:
                d.pop(other)  # keep each task's plan free of the other tasks' settings
        if not self.schema.pretexts:
            d.pop("pretext")
        if not self.options:
            d.pop("options")
        return d

    @property
    def schema(self) -> TaskSchema:
        return TASK_SCHEMAS.get(self.task, TaskSchema())

    @property
    def sections(self) -> tuple[str, ...]:
        """The task-specific sections this plan uses (its task's, and its pretext's)."""
        return self.schema.sections + self.schema.pretexts.get(self.pretext, ())

    @property
    def mirror_axes(self) -> list[int]:
        """Spatial axes a segmentation (or restoration) plan mirrors in training: ``segment.mirror_axes``
        when ``augment.flip`` is on, else none."""
        if "segment" not in self.sections or not self.augment.flip or self.augment.p <= 0:
            return []
        return sorted({a for a in self.segment.mirror_axes if 0 <= a < self.spatial_dims})

    @property
    def mirror_tta(self) -> list[int]:
        """Axes whose mirrored views inference averages: ``segment.tta_flips``, but only along the axes
        training mirrored. A network that never saw a mirrored case mislabels it (hippocampus:
        anterior <-> posterior; test Dice .84 -> .51 in the bench-transfer ablation without augmentation)."""
        return self.mirror_axes if "segment" in self.schema.sections and self.segment.tta_flips else []

    @property
    def restores(self) -> bool:
        """A restoration pretraining plan: it samples patches as its segmentation plan does."""
        return "segment" in self.schema.pretexts.get(self.pretext, ())

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "plan") -> "Plan":
        """A plan from plain data; a plan of an older schema version is migrated first."""
        return _build(cls, migrate(d, source), source).validate()

    def save(self, path: str | Path) -> Path:
        text = "# medcnn plan: edit freely; `medcnn train DATA --plan THIS_FILE` uses it.\n"
        text += yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        p = Path(path)
        if not p.is_file():
            raise ConfigError("plan file not found", p)
        try:
            d = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML ({str(e).splitlines()[0]})", p) from None
        if not isinstance(d, dict):
            raise ConfigError("a plan must be a YAML mapping", p)
        return cls.from_dict(d, source=str(p))

    def override(self, assignments: list[str]) -> "Plan":
        """Apply ``key.sub=value`` assignments (values parsed as YAML) and re-validate. Another
        ``model.name`` keeps ``model.kwargs``: ``medcnn.models.override_plan`` drops those the new
        network does not take."""
        d = self.to_dict()
        for a in assignments:
            key, sep, raw = a.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {a!r} must look like key=value (e.g. optim.lr=3e-4)")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            node = d
            parts = key.strip().split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown plan field {key!r}")
                node = node[part]
            if parts[-1] not in node and not (len(parts) > 1 and parts[-2] in ("kwargs", "split",
                                                                                 "normalization_args")):
                raise ConfigError(f"unknown plan field {key!r}" + moved_field(key.strip()))
            if parts == ["augment", "preset"]:
                # a preset names all the augmentation settings: apply them, not just the label
                # (later augment.* assignments still adjust single fields)
                node.clear()
                node.update(dataclasses.asdict(augment_preset(str(value))))
                continue
            node[parts[-1]] = value
        return Plan.from_dict(d, source="overrides")


def _build(cls, d: dict[str, Any], source: str):
    """Recursively build dataclass ``cls`` from plain data, checking names and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} in {cls.__name__} (known: {sorted(fields)})", source)
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = _coerce(hints[name], value, f"{cls.__name__}.{name}", source)
    return cls(**kwargs)


def _coerce(tp, value, where: str, source: str):
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping", source)
        return _build(tp, value, source)
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if origin is list and isinstance(value, (list, tuple)):
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, where, source) for v in value]
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if tp is Any:
        return value
    raise ConfigError(f"{where} has the wrong type: got {value!r}", source)
