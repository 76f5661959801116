"""A segmentation case as network input: normalised, resampled to the plan's spacing, as tensors."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medcnn.data.image import Image
from medcnn.plan import Plan
from medcnn.transforms.intensity import normalize
from medcnn.transforms.spatial import resample, resampled_shape


@dataclass
class PreparedCase:
    id: str
    image: torch.Tensor  # (C, *spatial) float32, normalised, on the plan's grid
    label: torch.Tensor | None  # (1, *spatial) uint8
    fov: torch.Tensor | None  # (1, *spatial) uint8
    original_shape: tuple[int, ...]
    original_spacing: tuple[float, ...]


def prepare_image(image: Image, plan: Plan) -> torch.Tensor:
    seg = plan.segment
    ms = seg.ct_mean_std or [0.0, 1.0]
    x = normalize(image.array, seg.normalization, ct_clip=seg.ct_clip, mean=[ms[0]], std=[ms[1]])
    return resample(x, target_shape(image, plan)).float().contiguous()


def target_shape(image: Image, plan: Plan) -> tuple[int, ...]:
    t = plan.segment.target_spacing
    return resampled_shape(image.spatial_shape, image.spacing, t) if t else image.spatial_shape


def prepare_case(case_id: str, image: Image, label: Image | None, fov: Image | None, plan: Plan) -> PreparedCase:
    shape = target_shape(image, plan)
    x = prepare_image(image, plan)
    y = resample(np.ascontiguousarray(label.array.astype(np.uint8)), shape, label=True) if label is not None else None
    f = resample(np.ascontiguousarray(fov.array.astype(np.uint8)), shape, label=True) if fov is not None else None
    return PreparedCase(case_id, x, y, f, image.spatial_shape, image.spacing)
