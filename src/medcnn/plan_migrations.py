"""Plan schema versions, and the migration of older plan dicts to the current one.

A plan's ``schema_version`` names the fields it has. :func:`migrate` runs on every plan dict that
is loaded (plan files, run folders, the plans inside checkpoints), so runs written by older
versions load and predict as they did.

- Version 1 (no ``schema_version``): intensity normalisation in three places,
  ``preprocessing.intensity`` (classify: uint8 | percentile), ``segment.normalization`` with
  ``segment.ct_clip`` and ``segment.ct_mean_std`` (segment and restoration pretraining: zscore |
  ct | rgb | none), ``enhance.normalization`` with ``enhance.window`` (enhance: window | percentile).
- Version 2: one normaliser, ``preprocessing.normalization`` with its parameters in
  ``preprocessing.normalization_args`` (medcnn.transforms.normalize). From version 1, by task:

  | version 1 | version 2 |
  |---|---|
  | intensity: uint8 | normalization: uint8 |
  | intensity: percentile | normalization: percentile_clip |
  | segment.normalization: zscore / rgb / none | normalization: zscore / rgb / none |
  | segment.normalization: ct, ct_clip: [lo, hi], ct_mean_std: [m, s] | normalization: ct, args {clip: [lo, hi], mean: m, std: s} (empty lists: the defaults) |
  | enhance.normalization: window, window: [lo, hi] | normalization: window, args {window: [lo, hi]} |
  | enhance.normalization: percentile | normalization: percentile_affine (``enhance.window`` is dropped: only the CT degradations used it, and they need a fixed window) |

  ``preprocessing.intensity`` of segment and enhance plans (unused, "none") is dropped.
"""
from __future__ import annotations

import copy
from typing import Any

from medcnn.errors import ConfigError

SCHEMA_VERSION = 2

# version-1 fields and where their settings live now (for the errors of overrides that name them)
MOVED = {"preprocessing.intensity": "preprocessing.normalization (uint8 | percentile_clip)",
         "segment.normalization": "preprocessing.normalization (zscore | ct | rgb | none)",
         "segment.ct_clip": "preprocessing.normalization_args.clip",
         "segment.ct_mean_std": "preprocessing.normalization_args.mean and .std",
         "enhance.normalization": "preprocessing.normalization (window | percentile_affine)",
         "enhance.window": "preprocessing.normalization_args.window"}


def moved_field(key: str) -> str:
    """'' or, for a version-1 field, where it went (to append to an error message)."""
    return f"; since plan schema 2 it is {MOVED[key]}" if key in MOVED else ""


def migrate(d: dict[str, Any], source: str = "plan") -> dict[str, Any]:
    """``d`` at the current schema version (``d`` itself when it is already; else a migrated copy)."""
    version = d.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"schema_version must be a whole number >= 1, got {version!r}", source)
    if version > SCHEMA_VERSION:
        raise ConfigError(f"plan schema_version {version} is newer than this medcnn reads ({SCHEMA_VERSION}): "
                          "update medcnn", source)
    if version == SCHEMA_VERSION:
        return d
    d = copy.deepcopy(d)
    for step in _STEPS[version - 1:]:
        d = step(d)
    return d


def _v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    """One normalisation field (see the module's table)."""
    pre = d.setdefault("preprocessing", {})
    seg, en = d.get("segment") or {}, d.get("enhance") or {}
    intensity = pre.pop("intensity", "uint8")
    seg_name, clip, mean_std = seg.pop("normalization", "zscore"), seg.pop("ct_clip", []), seg.pop("ct_mean_std", [])
    en_name, window = en.pop("normalization", "window"), en.pop("window", [0.0, 1.0])
    task = d.get("task", "classify")
    args: dict[str, Any] = {}
    if task == "segment" or (task == "pretrain" and d.get("pretext") == "restoration"):
        name = seg_name
        if name == "ct":
            args = {**({"clip": list(clip)} if clip else {}),
                    **({"mean": mean_std[0], "std": mean_std[1]} if mean_std else {})}
    elif task == "enhance":
        name = {"percentile": "percentile_affine"}.get(en_name, en_name)
        if name == "window":
            args = {"window": list(window)}
    else:
        name = {"percentile": "percentile_clip"}.get(intensity, intensity)
    pre["normalization"], pre["normalization_args"] = name, args
    d["schema_version"] = 2
    return d


_STEPS = [_v1_to_v2]  # _STEPS[k - 1] takes a version-k dict to version k + 1
