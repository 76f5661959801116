"""The public datasets ``medcnn fetch`` knows: names, official sources and checksums.

MedMNIST (v2/v3, 2D and 3D, every size) comes from ``medmnist_catalog.json``, generated from
the official ``medmnist`` 3.0.2 ``INFO``. A MedMNIST name is its flag, optionally followed by
a size: ``breastmnist`` (28 px), ``breastmnist_64``, ``organmnist3d_64``. Two more datasets
are folders checked file by file against a committed ``*.md5`` manifest: ``msd-hippocampus``
(MSD Task04) and ``drive`` (DRIVE retinal vessels). ``invesalius-ct`` is a real head CT volume
taken from a Debian package (checksummed), converted to NIfTI in HU.
"""
from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from medcnn.errors import ConfigError

DEFAULT_SIZE = 28

# Folder datasets: name -> where they live under the data root and where they come from.
MSD_HIPPOCAMPUS: dict[str, str] = {
    "name": "msd-hippocampus",
    "folder": "msd_task04_hippocampus",
    "manifest": "msd_hippocampus.md5",
    "url": "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar",
    "md5": "9d24dba78a72977dbd1d2e110310f31b",  # as MONAI's DecathlonDataset verifies it
    "archive": "Task04_Hippocampus.tar",
    "license": "CC BY-SA 4.0",
}
DRIVE: dict[str, str] = {
    "name": "drive",
    "folder": "drive",
    "manifest": "drive.md5",
    "homepage": "https://drive.grand-challenge.org/",  # registration required, no direct URL
    "layout": "training/{images,1st_manual,mask} and test/{images,1st_manual,2nd_manual,mask}",
    "license": "research use (cite Staal et al., IEEE TMI 2004)",
}
INVESALIUS_CT: dict[str, str] = {
    "name": "invesalius-ct",
    "folder": "invesalius_ct",
    # Debian's invesalius-examples: a real head CT (108 slices of 256 x 256, int16 HU) in a .inv3 project
    "url": "https://deb.debian.org/debian/pool/main/i/invesalius/invesalius-examples_3.1.99998-4_all.deb",
    "md5": "3f5def7ec63c6d0d2b9527281d2a98da",
    "archive": "invesalius-examples_3.1.99998-4_all.deb",
    "member": "usr/share/doc/invesalius-examples/examples/Cranium.inv3",
    "nifti": "cranium_ct.nii.gz",
    "license": "GPL-2 (InVesalius examples, CTI Renato Archer)",
}
FOLDER_DATASETS: dict[str, dict[str, str]] = {d["name"]: d for d in (MSD_HIPPOCAMPUS, DRIVE, INVESALIUS_CT)}


@cache
def _load_medmnist() -> dict[str, Any]:
    text = resources.files("medcnn.data").joinpath("medmnist_catalog.json").read_text("utf-8")
    return json.loads(text)


def __getattr__(name: str) -> Any:  # lazy module attribute: MEDMNIST
    if name == "MEDMNIST":
        return _load_medmnist()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def medmnist_sizes(flag: str) -> list[int]:
    """The image sizes published for ``flag`` (28/64/128/224 for 2D, 28/64 for 3D)."""
    return sorted(int(s) for s in medmnist_info(flag)["files"])


def dataset_names() -> list[str]:
    """Every name ``fetch`` accepts (the canonical spelling of each)."""
    names = []
    for flag in sorted(_load_medmnist()):
        names += [flag if s == DEFAULT_SIZE else f"{flag}_{s}" for s in medmnist_sizes(flag)]
    return names + list(FOLDER_DATASETS)


def _unknown(name: str) -> ConfigError:
    close = difflib.get_close_matches(name.strip().lower(), dataset_names(), n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else
            "known: MedMNIST flags such as 'breastmnist' or 'organmnist3d_64', "
            "'msd-hippocampus', 'drive'")
    return ConfigError(f"unknown dataset {name!r}; {hint}")


def medmnist_info(flag: str) -> dict[str, Any]:
    """The catalog entry of a MedMNIST flag (task, label, n_channels, n_samples, files...)."""
    try:
        return _load_medmnist()[flag.lower()]
    except KeyError:
        raise _unknown(flag) from None


def medmnist_flag(name: str) -> tuple[str, int]:
    """Parse ``breastmnist``, ``BreastMNIST_64``... into ``(flag, size)``."""
    m = re.fullmatch(r"([a-z0-9]+?)(?:_(\d+))?", name.strip().lower())
    if not m or m.group(1) not in _load_medmnist():
        raise _unknown(name)
    flag, size = m.group(1), int(m.group(2) or DEFAULT_SIZE)
    sizes = medmnist_sizes(flag)
    if size not in sizes:
        raise ConfigError(f"{flag} has no size {size} (sizes: {', '.join(map(str, sizes))})")
    return flag, size


def medmnist_filename(flag: str, size: int = DEFAULT_SIZE) -> str:
    """The official file name: ``breastmnist.npz`` for 28 px, else ``breastmnist_64.npz``."""
    return f"{flag}.npz" if int(size) == DEFAULT_SIZE else f"{flag}_{int(size)}.npz"


def medmnist_source(flag: str, size: int = DEFAULT_SIZE) -> tuple[str, str]:
    """``(url, md5)`` of the official file."""
    entry = medmnist_info(flag)["files"][str(int(size))]
    return entry["url"], entry["md5"]


@cache
def read_manifest(filename: str) -> dict[str, str]:
    """A committed ``md5sum``-style manifest as ``{relative path: md5}``."""
    text = resources.files("medcnn.data").joinpath(filename).read_text("utf-8")
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip())
    return {rel.strip(): md5.lower() for md5, rel in pairs}


@cache
def _load_reference() -> dict[str, Any]:
    text = resources.files("medcnn.data").joinpath("medmnist_reference.json").read_text("utf-8")
    return json.loads(text)


def paper_reference(flag: str) -> dict[str, list[float]]:
    """The MedMNIST v2 paper's test (AUC, ACC) per ResNet variant for ``flag``; {} if not recorded."""
    return dict(_load_reference().get(flag.lower(), {}))
