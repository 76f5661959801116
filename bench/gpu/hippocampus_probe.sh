#!/bin/bash
# GPU probes for issue #4: how far does the hippocampus default plan get with more epochs, and does a
# narrower U-Net with more epochs (about the same arithmetic as the CPU's 6 epochs) do better?
# Every run is bench/segment.py's hippocampus run (same case split, checkpoint and post-processing
# chosen on validation, test Dice on the 52 held-out cases) with the time budget off and fixed epochs.
# Run on a lent GPU machine from the repository root, with the missing wheels in .whl/ (monai,
# kornia, kornia_rs, nibabel, pydicom) and $MEDCNN_DATA/msd_task04_hippocampus in .gpudata/ (both
# git-ignored, carried; bench/gpu/setup.sh). Results: bench/results/EXPERIMENTS_segment.md, "Session 28".
source bench/gpu/setup.sh
R=/tmp/runs; mkdir -p $R
nvidia-smi -L 2>&1 | tee $OUT/env.txt
python3 -c "import torch,monai,kornia,lightning;print(torch.__version__,torch.cuda.is_available(),monai.__version__,kornia.__version__,lightning.__version__)" 2>&1 | tee -a $OUT/env.txt
TMO=${TMO:-450}
run() { name=$1; shift
  cp README.md $R/README_$name.md
  ( timeout $TMO python3 bench/segment.py --datasets hippocampus --out $R/$name --results $R/$name.json \
      --readme $R/README_$name.md --set max_minutes=0 --set threads=2 "$@" > $R/$name.log 2>&1
    echo "$name rc=$? args=$*" >> $OUT/done.txt ) &
}
W8='model.kwargs.filters=[8,16,32,64]'
W12='model.kwargs.filters=[12,24,48,96]'
run e6s0 --set epochs=6 --set seed=0
run e6s1 --set epochs=6 --set seed=1
run e12s0 --set epochs=12 --set seed=0
run e12s1 --set epochs=12 --set seed=1
run e20s0 --set epochs=20 --set seed=0
run w8e20s0 --set epochs=20 --set seed=0 --set $W8
run w12e12s0 --set epochs=12 --set seed=0 --set $W12
wait
for n in $R/*.json; do python3 -c 'import json,sys
for r in json.load(open(sys.argv[1])): print(json.dumps({"run": sys.argv[1].split("/")[-1][:-5], **{k: r.get(k) for k in ("dice_mean","per_label","best_val_dice","epochs","train_minutes","infer_s_per_case","precision","model_kwargs","plan_overrides")}}))' $n; done > $OUT/summary.jsonl
for f in $R/*.log; do echo "== $f"; grep -v "^\s*$" $f | tail -n 40; done > $OUT/logs.txt
for d in $R/*/hippocampus; do echo "== $d"; cat $d/logs/metrics.csv 2>/dev/null | head -60; done > $OUT/metrics.txt
cat $OUT/done.txt $OUT/summary.jsonl
