"""A segmentation case as network input: normalised, resampled to the plan's spacing, as tensors."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.plan import Plan
from medcnn.transforms.normalize import get_normalizer
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
    x = get_normalizer(plan).forward(image.array)
    return resample(x, target_shape(image, plan)).float().contiguous()


MAX_RESAMPLED = 2**28  # voxels after resampling to the plan's spacing (1 GiB of float32 per channel)


def target_shape(image: Image, plan: Plan) -> tuple[int, ...]:
    t = plan.segment.target_spacing
    if not t:
        return image.spatial_shape
    shape = resampled_shape(image.spatial_shape, image.spacing, t)
    n = float(np.prod([float(s) for s in shape]))
    if n > MAX_RESAMPLED:
        spacing = " x ".join(f"{s:.3g}" for s in image.spacing)
        raise InputError(f"at the model's voxel size the image would have {n:.3g} voxels (limit {MAX_RESAMPLED}); "
                         f"its voxel size {spacing} mm looks wrong", image.meta.get("source"))
    return shape


def prepare_case(case_id: str, image: Image, label: Image | None, fov: Image | None, plan: Plan) -> PreparedCase:
    shape = target_shape(image, plan)
    x = prepare_image(image, plan)
    y = resample(np.ascontiguousarray(label.array.astype(np.uint8)), shape, label=True) if label is not None else None
    f = resample(np.ascontiguousarray(fov.array.astype(np.uint8)), shape, label=True) if fov is not None else None
    return PreparedCase(case_id, x, y, f, image.spatial_shape, image.spacing)
