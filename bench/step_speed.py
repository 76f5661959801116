"""Step and inference time of the planned U-Nets under fp32 / bf16 / channels_last / torch.compile
(measurements behind `precision: auto` and the memory formats; bench/results/EXPERIMENTS_segment.md,
EXPERIMENTS_enhance.md).

    .venv/bin/python bench/step_speed.py bf16 3     # MODE: fp32 | bf16 | bf16cl | bf16compile
                                                    # NET: 3 | 2 (segmentation, 3D / 2D) | enhance
"""
import sys
import time

import torch

from medcnn.models import create_model

torch.set_num_threads(2)
mode = sys.argv[1]
kind = sys.argv[2] if len(sys.argv) > 2 else "3"
dims = 3 if kind == "3" else 2
if kind == "3":  # the plans medcnn writes for MSD Hippocampus and DRIVE
    net = create_model("unet", 3, 1, 3, filters=[16, 32, 64, 128], strides=[1, 2, 2, 2])
    shape, k = (6, 1, 40, 56, 40), 3
elif kind == "2":
    net = create_model("unet", 2, 3, 2, filters=[16, 32, 64, 128, 256, 256], strides=[1, 2, 2, 2, 2, 2])
    shape, k = (4, 3, 256, 256), 2
else:  # the enhancement plan's residual U-Net without normalisation layers: an L1 regression
    net = create_model("unet", 2, 1, 1, filters=[32, 64, 128, 256], strides=[1, 2, 2, 2], norm="")
    shape, k = (16, 1, 64, 64), 0
x = torch.randn(shape)
y = torch.randn(shape) if kind == "enhance" else torch.randint(0, k, (shape[0],) + shape[2:])
if "cl" in mode:
    fmt = torch.channels_last_3d if dims == 3 else torch.channels_last
    net = net.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
opt = torch.optim.AdamW(net.parameters(), 1e-3)
f = torch.compile(net) if "compile" in mode else net
bf = "bf16" in mode


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
        out = f(x)
    if kind == "enhance":
        loss = torch.nn.functional.l1_loss(x + out.float(), y)
    else:
        loss = torch.nn.functional.cross_entropy(out.float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad()


t0 = time.perf_counter()
for _ in range(3):
    step()
warm = time.perf_counter() - t0
ts = []
for _ in range(8):
    t0 = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t0)
ts.sort()
net.eval()
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
    xi = x[:1].repeat(8 if dims == 3 else 4, *[1] * (len(shape) - 1))
    for _ in range(2):
        f(xi)
    t0 = time.perf_counter()
    for _ in range(4):
        f(xi)
    inf = (time.perf_counter() - t0) / 4
print(f"{mode} net={kind}: step median {ts[4]:.3f}s  warmup3 {warm:.1f}s  inference batch{len(xi)} {inf:.3f}s")
