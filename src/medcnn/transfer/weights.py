"""Pretrained weights into a network: find them, line their names up, adapt what must be adapted.

A source is a weights file (a plain state dict as torchvision / timm save it, a Lightning or
medcnn checkpoint, ``.safetensors``), a medcnn run folder (its best checkpoint, from any task),
named weights (``medcnn.transfer.catalog``: ``squeezenet1_1.imagenet``) or the name of a backbone
from ``medcnn pretrain``. Names are lined up by stripping wrapper prefixes
(``module.``, ``net.``, ``1.`` of a ``Sequential``...) on both sides, choosing the stripping that
matches the most tensors, so an ImageNet ResNet-18 state dict lands in medcnn's MONAI ResNet-18
whatever wraps it. Each target tensor is then

- **loaded** (same name, same shape),
- **adapted**: input channels (RGB kernels summed for one channel, or repeated and rescaled, as
  timm's ``adapt_input_conv``) and/or 2D -> 3D inflation (a k x k kernel repeated along the new
  axis and divided by its depth, as I3D), or
- **new** (absent from the source, or a shape no rule adapts: a head for another number of classes).

Every file is read with ``torch.load(..., weights_only=True)``: a pickled object is refused.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcnn.errors import InputError
from medcnn.runs import RunFolder, dequantized, load_checkpoint
from medcnn.transfer import catalog

BACKBONE_DIRS_ENV = "MEDCNN_BACKBONES"  # extra folders searched for named backbones (medcnn-<name>.pt)
MAX_PREFIX_DEPTH = 3
KEPT = "this plan's input normalisation (kept)"
NEW_PART = "new: a part no source of this kind holds (e.g. a U-Net's decoder)"


@dataclass
class LoadReport:
    source: str
    file: str = ""  # the file the weights were read from
    target_prefix: str = ""
    source_prefix: str = ""
    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)  # target name -> how
    new: dict[str, str] = field(default_factory=dict)  # target name -> why
    unused: list[str] = field(default_factory=list)  # source tensors that went nowhere

    @property
    def transferred(self) -> set[str]:
        """Target state-dict names that now hold pretrained values (loaded or adapted)."""
        return {self.target_prefix + k for k in [*self.loaded, *self.adapted]}

    def summary(self) -> str:
        lines = [f"pretrained weights from {self.source}: {len(self.loaded)} tensors loaded, "
                 f"{len(self.adapted)} adapted, {len(self.new)} newly initialised, {len(self.unused)} source tensors unused"]
        lines += [f"  adapted {k}: {how}" for k, how in self.adapted.items()]
        new = list(self.new.items())
        lines += [f"  new {k}: {why}" for k, why in new[:12]]
        if len(new) > 12:
            lines.append(f"  ... and {len(new) - 12} more new tensors")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "loaded": len(self.loaded), "adapted": self.adapted, "new": self.new,
                "unused": len(self.unused)}


def backbone_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(BACKBONE_DIRS_ENV, "").split(os.pathsep) if p]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medcnn" / "backbones"
    return [*dirs, cache, Path(__file__).resolve().parent / "backbones"]


def resolve_source(source: str | os.PathLike) -> Path:
    """The file holding the weights of ``source`` (file, run folder, zoo model or backbone name)."""
    from medcnn.zoo import resolve

    p = resolve(source)
    if p.is_dir():
        found = RunFolder(p).best_checkpoint_file()
        if found is not None:
            return found
        raise InputError("is a folder but not a medcnn run with a checkpoint (checkpoints/best.ckpt)", p)
    if p.is_file():
        return p
    name = str(source)
    ws = catalog.find(name)
    if ws is not None:
        return catalog.weights_file(ws)
    for d in backbone_dirs():
        for cand in (d / f"{name}.pt", d / f"medcnn-{name}.pt"):
            if cand.is_file():
                return cand
    raise InputError("not a weights file, a run folder, a zoo model (medcnn models --pretrained), named weights "
                     f"({', '.join(catalog.names())}) or a known backbone name "
                     f"(backbones are looked for in {', '.join(str(d) for d in backbone_dirs())})", name)


def read_state_dict(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of ``source`` (unwrapped from Lightning / timm / medcnn containers) and its file."""
    path = resolve_source(source)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise InputError("reading .safetensors needs the safetensors package (pip install safetensors)", path) from None
        try:
            obj: Any = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any parse error of a foreign file is a bad input
            raise InputError(f"not a readable safetensors file ({type(e).__name__})", path) from None
    else:
        obj = load_checkpoint(path)
    for key in ("state_dict", "model", "state_dict_ema", "model_state_dict", "weights"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise InputError("holds no state dict (a mapping of names to tensors)", path)
    sd = dequantized({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)})  # an int8-packed zoo model
    if not sd:
        raise InputError("holds no tensors", path)
    return sd, path


def _prefixes(keys: list[str]) -> set[str]:
    out = {""}
    for k in keys:
        parts = k.split(".")
        for d in range(1, min(MAX_PREFIX_DEPTH, len(parts) - 1) + 1):
            out.add(".".join(parts[:d]) + ".")
    return out


def _strip(keys: list[str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: k for k in keys if k.startswith(prefix)}


def align(source_keys: list[str], target_keys: list[str]) -> tuple[str, str]:
    """(source prefix, target prefix) whose removal makes the most names equal."""
    best, best_n = ("", ""), -1
    src = {p: set(_strip(source_keys, p)) for p in _prefixes(source_keys)}
    for pt in sorted(_prefixes(target_keys), key=len):
        names = set(_strip(target_keys, pt))
        for ps in sorted(src, key=len):
            n = len(names & src[ps])
            if n > best_n:
                best, best_n = (ps, pt), n
    return best


def adapt_input_channels(w: torch.Tensor, in_ch: int) -> torch.Tensor:
    """A conv kernel (O, I, ...) for ``in_ch`` input channels: I=3 -> 1 sums the RGB kernels (a gray
    image equals R=G=B, so the response is kept); otherwise repeat and rescale by I / in_ch."""
    i = w.shape[1]
    if in_ch == 1:
        return w.sum(dim=1, keepdim=True)
    reps = math.ceil(in_ch / i)
    return w.repeat(1, reps, *([1] * (w.ndim - 2)))[:, :in_ch] * (i / in_ch)


def inflate(w: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A 2D kernel (O, I, kh, kw) inflated to the 3D ``shape`` (O, I, a, b, c): repeated along the
    axis whose insertion fits (the slice axis, last, first) and divided by its size; None if none fits."""
    if w.ndim + 1 != len(shape):
        return None
    for axis in (w.ndim, 2, 3):
        if list(w.shape[2:axis]) + list(w.shape[axis:]) == list(shape[2:axis]) + list(shape[axis + 1:]) \
                and w.shape[:2] == shape[:2]:
            k = shape[axis]
            return w.unsqueeze(axis).repeat(*[k if d == axis else 1 for d in range(len(shape))]) / k
    return None


def _adapt(name: str, w: torch.Tensor, target: torch.Tensor, allow_inflate: bool) -> tuple[torch.Tensor | None, str]:
    how = []
    if not name.endswith("weight"):  # only convolution kernels are adapted
        return None, f"shape {tuple(w.shape)} in the source, {tuple(target.shape)} here"
    if w.ndim == target.ndim - 1 and w.ndim >= 3:
        if not allow_inflate:
            return None, "2D kernel for a 3D network (inflation off)"
        if w.shape[1] != target.shape[1]:
            how.append(f"input channels {w.shape[1]}->{target.shape[1]}")
            w = adapt_input_channels(w, int(target.shape[1]))
        w2 = inflate(w, target.shape)
        if w2 is None:
            return None, f"shape {tuple(w.shape)} does not inflate to {tuple(target.shape)}"
        how.append(f"inflated 2D->3D ({tuple(w.shape)} -> {tuple(target.shape)})")
        return w2, ", ".join(how)
    if w.ndim == target.ndim and w.ndim >= 3 and w.shape[0] == target.shape[0] and w.shape[2:] == target.shape[2:]:
        return adapt_input_channels(w, int(target.shape[1])), f"input channels {w.shape[1]}->{target.shape[1]}"
    return None, f"shape {tuple(w.shape)} in the source, {tuple(target.shape)} here"


def _is_head(w: torch.Tensor, t: torch.Tensor, out_channels: int) -> bool:
    """An output layer for another number of classes: only dimension 0 differs, and it is ours."""
    return w.ndim == t.ndim and w.shape[1:] == t.shape[1:] and t.shape[0] == out_channels != w.shape[0]


def _head_names(net: nn.Module, out_channels: int | None) -> set[str]:
    """State names of the network's output layer: its last layer with weights, when that layer has
    ``out_channels`` outputs."""
    last = None
    for mname, m in net.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            last = mname, m
    if last is None or out_channels is None or last[1].weight.shape[0] != out_channels:
        return set()
    return {f"{last[0]}.{k}" for k in last[1].state_dict()}


def _flagged_names(net: nn.Module, flag: str) -> set[str]:
    """State names of the modules that carry ``flag``: ``keep_on_transfer``, the plan's own (the input
    normalisation of the target's data); ``new_on_transfer``, parts that train from scratch on top of
    a pretrained encoder (a U-Net's decoder)."""
    out = set()
    for mname, m in net.named_modules():
        if getattr(m, flag, False):
            out |= {f"{mname}.{k}" if mname else k for k in m.state_dict()}
    return out


def load_pretrained(net: nn.Module, source: str | os.PathLike, *, allow_inflate: bool = True,
                    out_channels: int | None = None, partial: bool = False, min_fraction: float = 0.1) -> LoadReport:
    """Load ``source`` into ``net`` in place and report what happened to every tensor.

    Expected differences are handled: the input stem (adapted), the output head when only its
    output dimension differs and equals ``out_channels`` (new), parts marked ``new_on_transfer``
    (a U-Net decoder on a classification encoder: new), the plan's input normalisation (kept). Any other tensor without a fitting source raises InputError listing them, unless
    ``partial`` (then they start from scratch, reported). InputError also when fewer than
    ``min_fraction`` of the convolution kernels receive pretrained values (another architecture)."""
    sd, path = read_state_dict(source)
    target = net.state_dict()
    ps, pt = align(list(sd), list(target))
    src = _strip(list(sd), ps)
    report = LoadReport(source=str(source), file=str(path), target_prefix=pt, source_prefix=ps)
    new_state = dict(target)
    used = set()
    kept, fresh = _flagged_names(net, "keep_on_transfer"), _flagged_names(net, "new_on_transfer")
    head = _head_names(net, out_channels)
    for name, full in _strip(list(target), pt).items():
        t = target[full]
        if full in kept or full in fresh:
            report.new[name] = KEPT if full in kept else NEW_PART
            continue
        if name not in src:
            if name.endswith(".bias") and name[:-5] + ".weight" in src:  # the source's layer has no bias
                new_state[full] = torch.zeros_like(t)
                report.adapted[name] = "zero (the source layer has no bias)"
            elif full in head:
                report.new[name] = "new head: not in the source (a backbone without its classifier)"
            else:
                report.new[name] = "not in the source"
            continue
        w = sd[src[name]]
        used.add(src[name])
        if w.shape == t.shape:
            new_state[full] = w.to(t.dtype)
            report.loaded.append(name)
            continue
        w2, how = _adapt(name, w.float(), t, allow_inflate)
        if w2 is None and out_channels is not None and _is_head(w, t, out_channels):
            report.new[name] = f"new head: {w.shape[0]} outputs in the source, {t.shape[0]} here"
        elif w2 is None:
            report.new[name] = how
        else:
            new_state[full] = w2.to(t.dtype)
            report.adapted[name] = how
    for full in target:
        if not full.startswith(pt):
            report.new[full] = KEPT if full in kept else "outside the matched module"
    report.unused = [k for k in sd if k not in used]
    kernels = [k for k, v in target.items() if v.ndim >= 3]  # convolution kernels carry what was learned
    got = [k for k in kernels if k in report.transferred]
    if len(got) < min_fraction * len(kernels):
        why = "" if allow_inflate else "; 2D weights for a 3D network need transfer.inflate: true"
        raise InputError(f"only {len(got)} of the network's {len(kernels)} convolution kernels match these weights: "
                         f"they are for another architecture (check the plan's model against the source{why})", path)
    misfits = [f"{k} ({why})" for k, why in report.new.items() if not why.startswith(("new head", KEPT, NEW_PART))]
    if misfits and not partial:
        more = f" and {len(misfits) - 6} more" if len(misfits) > 6 else ""
        raise InputError(f"{len(misfits)} tensors of the network have no fitting source tensor: "
                         f"{'; '.join(misfits[:6])}{more} (transfer.partial: true loads the rest and trains these "
                         "from scratch)", path)
    net.load_state_dict(new_state)
    return report
