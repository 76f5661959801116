"""A trained run made small enough to ship: one network (an ensemble's first member), its tensors in
float16 or its kernels in int8, the plan it was trained with (its ``data`` made portable); what evaluation chooses on
validation (temperature, domain statistics, post-processing) is chosen again for the packed network
by ``medcnn evaluate`` (``bench/zoo.py`` does, before the entry is written)."""
from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import torch

from medcnn import __version__
from medcnn.runs import SCALE_SUFFIX, RunFolder, load_checkpoint
from medcnn.utils.files import atomic_path, atomic_write_json

SHIPPED = ("plan.yaml", "run.json", "checkpoints/best.ckpt", "calibration.json", "domain.npz", "postprocess.json",
           "split.json")
"""The files of a run that a zoo entry keeps (those present)."""


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, float16 scale per output channel): symmetric, each channel's largest |w| -> 127."""
    flat = w.detach().float().reshape(w.shape[0], -1)
    scale = (flat.abs().amax(1) / 127).clamp_min(1e-12)
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(w.shape)
    return q, scale.to(torch.float16)


def packed_state(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors cast to ``dtype``; with ``torch.int8``, weight matrices and kernels
    (2+ dimensions) become int8 with a per-output-channel scale (``NAME#scale``, read back by
    :func:`medcnn.runs.dequantized`) and the rest (biases, norms) float16."""
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
        elif dtype == torch.int8 and v.dim() >= 2:
            out[k], out[k + SCALE_SUFFIX] = quantize_int8(v)
        else:
            out[k] = v.to(torch.float16 if dtype == torch.int8 else dtype)
    return out


def pack_run(run: str | Path, dest: str | Path, *, data: str | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``dest`` as a one-network run folder from ``run``'s best checkpoint (member 0 of an
    ensemble), floating-point tensors cast to ``dtype`` (``torch.int8``: see :func:`packed_state`);
    ``data``: the dataset name the packed plan records (e.g. ``breastmnist`` instead of a path on the
    machine that trained it)."""
    src = RunFolder(Path(run)).require()
    top = src.plan()
    member = src.members(top.ensemble)[0] if top.ensemble > 1 else src
    ckpt = load_checkpoint(member.checkpoint("best"))
    plan = dataclasses.replace(member.plan() if member.plan_file.is_file() else top, ensemble=1)
    if data is not None:
        plan = dataclasses.replace(plan, data=data)
    state = packed_state({k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}, dtype)
    out = RunFolder(Path(dest)).create(overwrite=True)
    out.save_plan(plan)
    if src.has_split():  # which cases validate and test (segmentation, enhancement): the card's metric needs it
        out.write_split(src.split())
    ckpt_file = out.checkpoint_file("best")
    ckpt_file.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()  # saved through a buffer: the archive's inner name does not follow the temporary file's
    torch.save({"hyper_parameters": {"plan": plan.to_dict()}, "state_dict": state, "epoch": ckpt.get("epoch")}, buf)
    with atomic_path(ckpt_file) as tmp:
        tmp.write_bytes(buf.getvalue())
    info = src.info()
    # a packed run packed again (a zoo entry re-quantised) still names the training run behind it
    origin = info.get("packed_from") or {"ensemble": top.ensemble, "member": 0 if top.ensemble > 1 else None,
                                         "command": info.get("command"), "best_val_score": info.get("best_val_score"),
                                         "val_metric": top.val_metric}
    atomic_write_json(out.path / "run.json", {
        "medcnn": __version__, "packed": time.strftime("%Y-%m-%dT%H:%M:%S"), "finished": info.get("finished"),
        "n": info.get("n", {}), "precision": info.get("precision"), "dtype": str(dtype).removeprefix("torch."),
        "packed_from": origin})
    return out.path


def shipped_files(run: str | Path) -> list[str]:
    """The files of a packed run that its zoo entry ships, relative to the run."""
    run = Path(run)
    return [f for f in SHIPPED if (run / f).is_file()]

