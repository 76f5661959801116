"""Ready-to-use models shipped with medcnn (the model zoo).

Each entry is a small run folder inside the package, ``medcnn/zoo/models/<name>/``: ``plan.yaml``,
``checkpoints/best.ckpt`` (the network's kernels in int8 with a float16 scale per output channel, or
its tensors in float16; read with ``weights_only``), the
choices evaluation made on validation (``calibration.json``, ``domain.npz``, ``postprocess.json``)
and ``card.json``: intended use, training data and licence, test metrics with 95 % intervals,
known failure modes, and the SHA-256 of every file. ``bench/zoo.py`` (``make zoo``) builds them from
the benchmark runs.

**Names.** A zoo name is lowercase words joined by ``-`` (``breastmnist-classifier``): never a
``.``, ``_`` or ``/``, so it cannot be read as torchvision's or medcnn's named weights
(``squeezenet1_1.imagenet``, ``ResNet18_Weights.IMAGENET1K_V1``) or as a path. ``zoo:NAME`` always
means the zoo; a bare ``NAME`` means the zoo only when nothing of that name exists in the current
folder (a run folder of the same name wins, with a warning).

Wherever a run folder is accepted (predict, evaluate, explain, export, compare, serve, --pretrained)
a zoo name is too: it resolves to a copy of the entry in the user's cache (``$MEDCNN_ZOO_CACHE``,
else ``$XDG_CACHE_HOME/medcnn/zoo`` or ``~/.cache/medcnn/zoo``), checked against the card's hashes,
so that what a command writes into the run (``eval/``, ``export/``) never touches the installed package.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from medcnn.errors import ConfigError

log = logging.getLogger("medcnn.zoo")

ZOO_DIR = Path(__file__).resolve().parent / "models"
PREFIX = "zoo:"
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CARD = "card.json"


def names() -> list[str]:
    """The zoo's entries, sorted."""
    return sorted(p.parent.name for p in ZOO_DIR.glob(f"*/{CARD}"))


def card(name: str) -> dict[str, Any]:
    """The model card of entry ``name`` (a zoo name, with or without ``zoo:``)."""
    name = name.removeprefix(PREFIX)
    path = ZOO_DIR / name / CARD
    if not path.is_file():
        raise ConfigError(f"no zoo model {name!r} (medcnn models --pretrained lists them: {', '.join(names()) or 'none'})")
    return json.loads(path.read_text())


def zoo_name(ref: str | os.PathLike) -> str | None:
    """The zoo entry ``ref`` names, or None when ``ref`` is a path (see the module's naming rule)."""
    text = os.fspath(ref)
    if text.startswith(PREFIX):
        name = text[len(PREFIX):]
        card(name)  # unknown: one line listing the zoo
        return name
    if not NAME.match(text) or not (ZOO_DIR / text / CARD).is_file():
        return None
    if Path(text).exists():
        log.warning("%r is both a folder here and a zoo model: using the folder (zoo:%s means the zoo model)", text, text)
        return None
    return text


def resolve(ref: str | os.PathLike) -> Path:
    """The run folder ``ref`` stands for: a zoo entry's checked copy in the cache, else ``ref`` itself."""
    name = zoo_name(ref)
    if name is None:
        return Path(ref)
    files = card(name)["files"]
    dest = cache_dir() / name
    if not all(_sha256(dest / f) == digest for f, digest in files.items()):
        _copy_entry(ZOO_DIR / name, dest, files)
    return dest


def cache_dir() -> Path:
    if os.environ.get("MEDCNN_ZOO_CACHE"):
        return Path(os.environ["MEDCNN_ZOO_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "medcnn" / "zoo"


def _copy_entry(src: Path, dest: Path, files: dict[str, str]) -> None:
    """A fresh copy of the entry's files (and only those), every hash checked; swapped in whole."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, digest in files.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
        if _sha256(target) != digest:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ConfigError(f"zoo model {src.name}: {rel} does not match its card's SHA-256 (a damaged install?)")
    shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process (a second medcnn at the same moment) put its copy there first
        shutil.rmtree(tmp, ignore_errors=True)
        if not all(_sha256(dest / f) == digest for f, digest in files.items()):
            raise


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256(path: Path) -> str:
    """The SHA-256 of a file (what a card records)."""
    digest = _sha256(Path(path))
    if digest is None:
        raise FileNotFoundError(path)
    return digest
