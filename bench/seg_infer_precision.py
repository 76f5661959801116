"""Test Dice and seconds per case of a segmentation run with fp32 vs bf16 inference (the measurement
behind the Segmenter's bf16 default; bench/results/EXPERIMENTS_segment.md).

    .venv/bin/python bench/seg_infer_precision.py RUN [THREADS]
"""
import json
import sys
import time

import numpy as np
import torch

from medcnn.data.segmentation import load_segmentation, read_case
from medcnn.tasks import load_model
from medcnn.tasks.segment.evaluate import surface_metrics
from medcnn.train.seg_data import cases_of

run = sys.argv[1]
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
seg = load_model(run)
split = json.load(open(f"{run}/split.json"))
data = load_segmentation(seg.plan.data)
labels = list(range(1, seg.plan.num_classes))
for bf16 in (False, True):
    seg.bf16 = bf16
    dice, times = [], []
    for c in cases_of(data, split["test"]):
        image, ref, _ = read_case(c, data.labels)
        t0 = time.perf_counter()
        pred = seg.segment(image).label.array[0]
        times.append(time.perf_counter() - t0)
        m = surface_metrics(pred, ref.array[0], labels, image.spacing, distances=False)
        dice.append([m[lab]["dice"] for lab in labels])
    d = np.array(dice)
    print(f"bf16={bf16}: test Dice per label {d.mean(0).round(4)}, mean {d.mean():.4f}; {np.mean(times):.3f} s/case")
