"""The run folder: the one module that knows its layout. Everything else reads and writes a run
through :class:`RunFolder`.

Layout::

    plan.yaml                   the resolved plan (reproduce with `medcnn train DATA --plan plan.yaml`)
    run.json                    versions, command, data source, timings, best epoch, time budget
    split.json | split.csv      the cases (segmentation, enhancement) or files (classification) of each split
    checkpoints/best.ckpt       weights + the plain-data plan they were trained with (``weights_only``-safe)
    checkpoints/last.ckpt       the end of the last finished epoch (``medcnn train --resume``)
    members/m0, m1, ...         an ensemble's members, each a run folder of its own
    transfer.json               pretrained weights used (``transfer.pretrained``)
    calibration.json            the temperature `evaluate` fitted on validation (classification)
    domain.npz                  what training inputs look like, for the input-domain check (classification)
    postprocess.json            the post-processing (and one label's threshold) `evaluate` chose on validation (segmentation)
    metrics.json, learning_curve.png, train.log, logs/   per-epoch numbers and logs
    eval/                       `medcnn evaluate` reports and figures
    export/model.onnx, model.json   `medcnn export`
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Iterable

from medcnn.errors import InputError, RunFolderError
from medcnn.plan import Plan
from medcnn.utils.files import atomic_path, atomic_write_json

CHECKPOINTS = {"best": "checkpoints/best.ckpt", "last": "checkpoints/last.ckpt"}


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's content, read with ``torch.load(..., weights_only=True)``: tensors and plain
    data only; a pickled object is refused with one clear line."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RunFolderError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise InputError(f"refused: the checkpoint holds more than weights and plain data "
                         f"(weights_only load failed: {first})", path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable checkpoint ({type(e).__name__})", path) from None


SCALE_SUFFIX = "#scale"
"""A tensor stored as int8 (a packed zoo model) has its per-output-channel scale under NAME#scale."""


def dequantized(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every int8 tensor that has a ``#scale`` companion turned back into float32
    (int8 value x its output channel's scale); the companions dropped. Other entries unchanged."""
    out = {}
    for k, v in state.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(k + SCALE_SUFFIX)
        if scale is not None and getattr(v, "dtype", None) is not None and str(v.dtype) == "torch.int8":
            v = v.float() * scale.float().reshape(-1, *([1] * (v.dim() - 1)))
        out[k] = v
    return out


def checkpoint_weights(path: str | os.PathLike) -> tuple[Plan, dict[str, Any]]:
    """(the plan a checkpoint was trained with, its network's tensors without the ``net.`` prefix;
    int8-packed tensors restored to float)."""
    ckpt = load_checkpoint(path)
    try:
        plan = Plan.from_dict(ckpt["hyper_parameters"]["plan"], source=str(path))
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    except (KeyError, TypeError, AttributeError):
        raise InputError("not a medcnn checkpoint (no plan / state_dict)", path) from None
    return plan, dequantized(state)


def saved_epoch(path: str | os.PathLike | None) -> int | None:
    """The (1-based) epoch a Lightning checkpoint was saved after; None without one."""
    if not path or not os.path.isfile(path):
        return None
    import torch

    # mmap: the tensors stay on disk, only the small "epoch" entry is read
    epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    return int(epoch) + 1 if epoch is not None else None


def member_seed(seed: int, i: int) -> int:
    """Member i of an ensemble trained with ``seed``: seed, seed + 1000, ... so that ensembles of
    different seeds (the benchmark's 0, 1, 2) share no member."""
    return seed + 1000 * i


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"unreadable {what}; delete it or re-run `medcnn evaluate`", path) from None


class RunFolder:
    """A run folder (see the module's layout). Paths are attributes; reads check what they read and
    fail with one line; writes are atomic."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    # ---- layout ------------------------------------------------------------------------
    plan_file = property(lambda self: self.path / "plan.yaml")
    info_file = property(lambda self: self.path / "run.json")
    split_file = property(lambda self: self.path / "split.json")
    split_csv = property(lambda self: self.path / "split.csv")
    calibration_file = property(lambda self: self.path / "calibration.json")
    postprocess_file = property(lambda self: self.path / "postprocess.json")
    domain_file = property(lambda self: self.path / "domain.npz")
    transfer_file = property(lambda self: self.path / "transfer.json")
    metrics_file = property(lambda self: self.path / "metrics.json")
    curve_file = property(lambda self: self.path / "learning_curve.png")
    log_file = property(lambda self: self.path / "train.log")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    eval_dir = property(lambda self: self.path / "eval")
    export_dir = property(lambda self: self.path / "export")
    predictions_dir = property(lambda self: self.path / "predictions")

    def export_files(self) -> tuple[Path, Path]:
        """(model.onnx, model.json) of the run's export."""
        return self.export_dir / "model.onnx", self.export_dir / "model.json"

    # ---- the folder itself ---------------------------------------------------------------
    def is_run(self) -> bool:
        return self.plan_file.is_file()

    def require(self) -> RunFolder:
        """This folder, which must exist and hold a plan."""
        if not self.path.is_dir():
            raise RunFolderError("run folder not found", self.path)
        if not self.is_run():
            raise RunFolderError("not a run folder (no plan.yaml)", self.path)
        return self

    def create(self, overwrite: bool) -> RunFolder:
        """Make the (empty) folder of a new run; an existing run is replaced only with ``overwrite``,
        and a folder that is not a run never."""
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise RunFolderError("run folder exists and is not empty; choose another --out or pass --overwrite",
                                     self.path)
            if not self.plan_file.exists() and not self.info_file.exists():
                raise RunFolderError("refusing to overwrite a folder that is not a medcnn run", self.path)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ---- plan and record -------------------------------------------------------------------
    def plan(self) -> Plan:
        if not self.plan_file.is_file():
            raise RunFolderError("not a run folder (no plan.yaml)", self.path)
        return Plan.load(self.plan_file)

    def save_plan(self, plan: Plan) -> Path:
        return plan.save(self.plan_file)

    def info(self) -> dict[str, Any]:
        """run.json ({} before training wrote it)."""
        return json.loads(self.info_file.read_text()) if self.info_file.is_file() else {}

    def write_info(self, info: dict[str, Any]) -> Path:
        return atomic_write_json(self.info_file, info)

    def finished(self) -> bool:
        return "finished" in self.info()

    # ---- checkpoints and members -----------------------------------------------------------------
    def checkpoint_file(self, name: str) -> Path:
        """Where checkpoint ``name`` (best | last) is written, whether or not it exists yet."""
        return self.path / CHECKPOINTS[name]

    def checkpoint(self, name: str = "best") -> Path:
        """The file of checkpoint ``name`` (best | last), which must exist; any other name is a path."""
        if name not in CHECKPOINTS:
            return Path(name)
        path = self.path / CHECKPOINTS[name]
        if not path.is_file():
            raise RunFolderError(f"has no {name} checkpoint ({CHECKPOINTS[name]}); did training finish an epoch?",
                                 self.path)
        return path

    def members(self, ensemble: int) -> list[RunFolder]:
        """The folders of an ensemble's ``ensemble`` members."""
        return [RunFolder(self.path / "members" / f"m{i}") for i in range(ensemble)]

    def member_record(self, i: int) -> str:
        """Member i's folder as run.json names it (relative to the run)."""
        return self.members(i + 1)[i].path.relative_to(self.path).as_posix()

    def checkpoint_files(self, plan: Plan, name: str = "best") -> list[Path]:
        """The checkpoint files a prediction of this run reads (every member's for an ensemble)."""
        if name not in CHECKPOINTS:
            return [Path(name)]
        if plan.ensemble > 1:
            return [m.path / CHECKPOINTS[name] for m in self.members(plan.ensemble)]
        return [self.checkpoint(name)]

    def weights(self, name: str = "best") -> tuple[Plan | None, list[tuple[Plan, dict[str, Any]]]]:
        """(the run's plan.yaml or None, [(checkpoint plan, network tensors)] of every network a
        prediction averages: one, or an ensemble's members)."""
        top = Plan.load(self.plan_file) if self.plan_file.is_file() else None
        if name in CHECKPOINTS and top is not None and top.ensemble > 1:
            return top, [checkpoint_weights(m.checkpoint(name)) for m in self.members(top.ensemble)]
        return top, [checkpoint_weights(self.checkpoint(name))]

    # ---- splits ---------------------------------------------------------------------------------
    def has_split(self) -> bool:
        return self.split_file.is_file()

    def split(self) -> dict[str, Any]:
        if not self.split_file.is_file():
            raise RunFolderError("has no split.json", self.path)
        return _read_json(self.split_file, "split.json")

    def write_split(self, split: dict[str, Any]) -> Path:
        return atomic_write_json(self.split_file, split)

    def write_split_csv(self, rows: Iterable[tuple[str, str, str, str]]) -> Path:
        """split.csv: one (path, label, split, group) row per file of a folder / CSV dataset; the
        group is the patient the split kept together (hashed when it came from DICOM headers)."""
        with atomic_path(self.split_csv) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "split", "group"])
            w.writerows(rows)
        return self.split_csv

    # ---- choices `evaluate` made on validation ---------------------------------------------------------
    def temperature(self, checkpoint: str) -> float:
        """The temperature fitted on validation for this checkpoint choice (1.0 if none)."""
        if not self.calibration_file.is_file():
            return 1.0
        c = _read_json(self.calibration_file, "calibration file")
        try:
            return float(c["temperature"]) if c.get("checkpoint") == checkpoint else 1.0
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError("unreadable calibration file; delete it or re-run `medcnn evaluate`",
                             self.calibration_file) from None

    def write_calibration(self, temperature: float, checkpoint: str) -> Path:
        return atomic_write_json(self.calibration_file, {"temperature": temperature, "fitted_on": "val",
                                                         "checkpoint": checkpoint})

    def postprocess(self, default: str) -> str:
        """The post-processing chosen on validation (``default`` before `evaluate` chose one)."""
        if not self.postprocess_file.is_file():
            return default
        try:
            return str(json.loads(self.postprocess_file.read_text())["postprocess"])
        except (ValueError, KeyError, TypeError):
            raise InputError("unreadable postprocess.json; delete it or re-run `medcnn evaluate`",
                             self.postprocess_file) from None

    def foreground_threshold(self) -> float:
        """The probability threshold of a one-label segmentation chosen on validation (0.5 before
        `evaluate` chose one)."""
        record = self.postprocess_record()
        try:
            return float(record.get("threshold", 0.5)) if record else 0.5
        except (TypeError, ValueError, AttributeError):
            raise InputError("unreadable postprocess.json; delete it or re-run `medcnn evaluate`",
                             self.postprocess_file) from None

    def mirror_views(self) -> bool:
        """Whether validation kept the plan's mirrored test-time views (True before `evaluate` chose)."""
        record = self.postprocess_record()
        return bool(record.get("mirror_views", True)) if isinstance(record, dict) else True

    def postprocess_record(self) -> dict[str, Any] | None:
        return _read_json(self.postprocess_file, "postprocess.json") if self.postprocess_file.is_file() else None

    def write_postprocess(self, choice: dict[str, Any]) -> Path:
        return atomic_write_json(self.postprocess_file, choice)

    # ---- transfer ---------------------------------------------------------------------------------
    def transferred(self) -> set[str]:
        """Names of the network tensors filled from pretrained weights (transfer.json)."""
        if not self.transfer_file.is_file():
            return set()
        return set(_read_json(self.transfer_file, "transfer.json").get("transferred", []))

    def write_transfer(self, report: dict[str, Any], transferred: set[str]) -> Path:
        return atomic_write_json(self.transfer_file, {**report, "transferred": sorted(transferred)})

    def best_checkpoint_file(self) -> Path | None:
        """The first checkpoint a weights source may take from this folder (best, else last)."""
        for name in ("best", "last"):
            if (self.path / CHECKPOINTS[name]).is_file():
                return self.path / CHECKPOINTS[name]
        return None
