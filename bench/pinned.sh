#!/usr/bin/env bash
# The three pinned runs of a behaviour-preserving change (issue #35): PneumoniaMNIST seed 0, the
# hippocampus row and the mr-gaussian row with no time budget and the epochs their README records
# name (32, 11, 41), so that a run depends only on the code. Run it from a checkout of each commit
# (e.g. a `git worktree`), then compare the two folders with bench/pinned_compare.py.
#   MEDCNN_DATA=../shared/data bench/pinned.sh OUT     (about 1 h alone on 2 CPU cores)
set -eu
out=${1:?usage: bench/pinned.sh OUT}
py=${PYTHON:-python}
mkdir -p "$out"
cp README.md "$out/README.md"  # the benches rewrite a README table: keep the checkout's untouched
$py bench/classify.py --datasets pneumoniamnist --seeds 0 --official none --fresh --set epochs=32 --set max_minutes=0 \
  --out "$out/classify" --results "$out/classify.json" --readme "$out/README.md" > "$out/classify.log" 2>&1
$py bench/enhance.py --cases mr-gaussian --set epochs=41 --set max_minutes=0 \
  --out "$out/enhance" --results "$out/enhance.json" --readme "$out/README.md" > "$out/enhance.log" 2>&1
$py bench/segment.py --datasets hippocampus --set epochs=11 --set max_minutes=0 \
  --out "$out/segment" --results "$out/segment.json" --readme "$out/README.md" > "$out/segment.log" 2>&1
