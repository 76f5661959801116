#!/bin/bash
# CUDA check on a lent GPU machine: tests/train/test_cuda.py (every task trains, evaluates and predicts
# on the GPU). Needs .gpudata/medmnist/{breastmnist,adrenalmnist3d}.npz and .gpudata/msd_task04_hippocampus.
source bench/gpu/setup.sh
nvidia-smi -L > $OUT/gpu.txt 2>&1
timeout ${TMO:-400} python3 -m pytest -q -p no:cacheprovider tests/train/test_cuda.py -W ignore 2>&1 | tail -n 80 > $OUT/pytest.txt
cat $OUT/pytest.txt
