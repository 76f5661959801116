"""Step and inference time of the planned segmentation U-Nets under fp32 / bf16 / channels_last /
torch.compile (a measurement behind `precision: auto`; bench/results/EXPERIMENTS_segment.md).

    .venv/bin/python bench/seg_step_speed.py bf16 3     # MODE: fp32 | bf16 | bf16cl | bf16compile; DIMS: 2 | 3
"""
import sys
import time

import torch

from medcnn.models import create_model

torch.set_num_threads(2)
mode = sys.argv[1]
dims = int(sys.argv[2]) if len(sys.argv) > 2 else 3
if dims == 3:  # the plans medcnn writes for MSD Hippocampus and DRIVE
    net = create_model("unet", 3, 1, 3, filters=[16, 32, 64, 128], strides=[1, 2, 2, 2])
    shape, k = (6, 1, 40, 56, 40), 3
else:
    net = create_model("unet", 2, 3, 2, filters=[16, 32, 64, 128, 256, 256], strides=[1, 2, 2, 2, 2, 2])
    shape, k = (4, 3, 256, 256), 2
x = torch.randn(shape)
y = torch.randint(0, k, (shape[0],) + shape[2:])
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
print(f"{mode} dims={dims}: step median {ts[4]:.3f}s  warmup3 {warm:.1f}s  inference batch{len(xi)} {inf:.3f}s")
