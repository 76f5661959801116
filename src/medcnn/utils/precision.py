"""The numeric precision a plan's ``precision: auto`` resolves to on this machine."""
from __future__ import annotations


def resolve_precision(precision: str, cpu_bf16: bool = True) -> str:
    """"auto": bf16 autocast on GPUs and on CPUs with AVX-512 bf16 (where ``cpu_bf16``: the task
    trains reliably in bf16 there), else float32. Another value is returned as it is."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is None or not check():
        return "32"
    return "bf16-mixed" if cpu_bf16 else "32"
