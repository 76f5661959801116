"""Any segmentation dataset medcnn reads, written in nnU-Net v2's raw format (``dataset.json`` with
``channel_names``, ``labels``, ``numTraining``, ``file_ending``; ``imagesTr/CASE_0000...``,
``labelsTr/CASE``; a fixed test set in ``imagesTs``/``labelsTs``, unlabelled images in ``imagesTs``).

8-bit 2D images (photographs, DRIVE) are written as PNG, one grey file per channel, as nnU-Net's
natural-image reader expects; everything else as NIfTI with its affine, so spacing and orientation
travel. A field-of-view mask has no place in the format and is left out. medcnn reads the result
back as the same cases (tests/data/test_nnunet.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcnn.data.segmentation import SegmentationData, read_case
from medcnn.errors import InputError
from medcnn.io.image import Image
from medcnn.io.nifti import write_nifti
from medcnn.utils.files import atomic_write_json

RGB_NAMES = ("R", "G", "B")


def _ending(image: Image) -> str:
    return ".png" if image.spatial_dims == 2 and image.array.dtype == np.uint8 else ".nii.gz"


def _write(arr: np.ndarray, like: Image, path: Path) -> None:
    if path.name.endswith(".png"):
        from PIL import Image as PILImage

        PILImage.fromarray(np.ascontiguousarray(arr)).save(path)
    else:
        write_nifti(Image(arr[None], like.affine, like.meta), path)


def write_nnunet(data: SegmentationData, dest: str | Path) -> Path:
    """Write ``data`` to the new folder ``dest`` (refused when it exists); returns it."""
    dest = Path(dest)
    if dest.exists():
        raise InputError("exists; give a new folder for the nnU-Net dataset", dest)
    for sub in ("imagesTr", "labelsTr"):
        (dest / sub).mkdir(parents=True)
    ending, channels = None, None
    parts = [("Tr", data.cases), ("Ts", data.test_cases), ("Ts", data.unlabelled)]
    for part, cases in parts:
        for case in cases:
            image, label, _ = read_case(case, data.labels)
            ending = ending or _ending(image)
            channels = channels or image.channels
            if image.channels != channels:
                raise InputError(f"case {case.id} has {image.channels} channels, the others {channels}", case.images[0])
            (dest / f"images{part}").mkdir(exist_ok=True)
            for k in range(image.channels):
                _write(image.array[k], image, dest / f"images{part}" / f"{case.id}_{k:04d}{ending}")
            if label is not None:
                (dest / f"labels{part}").mkdir(exist_ok=True)
                _write(label.array[0].astype(np.uint8), label, dest / f"labels{part}" / f"{case.id}{ending}")
    names = data.channel_names or (list(RGB_NAMES) if channels == 3 else [data.modality or "image"] * (channels or 1))
    meta = {"name": data.name, "channel_names": {str(k): n for k, n in enumerate(names)},
            "labels": {name: value for value, name in sorted(data.labels.items())},
            "numTraining": len(data.cases), "file_ending": ending or ".nii.gz",
            "description": f"written by medcnn from {data.source}"}
    atomic_write_json(dest / "dataset.json", meta)
    return dest


def describe(dest: Path) -> str:
    meta = json.loads((dest / "dataset.json").read_text())
    return (f"{meta['numTraining']} training cases, channels {list(meta['channel_names'].values())}, "
            f"labels {meta['labels']}, {meta['file_ending']}")
