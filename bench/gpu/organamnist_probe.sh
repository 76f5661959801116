#!/bin/bash
# GPU probes: OrganAMNIST recipe search (issue #3) + CUDA/bf16 training figures, on a lent GPU
# machine (torch there, no MONAI/kornia). Run from the repository root with the missing wheels in
# .whl/ (monai, kornia, kornia_rs, nibabel, pydicom; pip download --python-version 3.12 ...) and
# $MEDCNN_DATA/medmnist/{organamnist,pneumoniamnist}.npz in .gpudata/ (both git-ignored, carried).
# Results: bench/results/EXPERIMENTS.md, "GPU probes".
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src MEDCNN_DATA=$PWD/.gpudata PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT; R=/tmp/runs; mkdir -p $R
nvidia-smi -L 2>&1 | tee $OUT/env.txt
python3 -c "import torch,monai,kornia,lightning;print(torch.__version__,torch.cuda.is_available(),monai.__version__,kornia.__version__,lightning.__version__)" 2>&1 | tee -a $OUT/env.txt
EP=${EP:-}
run() { name=$1; ds=$2; shift 2
  ( s=$(date +%s); timeout ${TMO:-400} python3 -m medcnn train $ds --out $R/$name --seed 0 --set threads=3 $EP "$@" > $R/$name.log 2>&1
    e=$(date +%s); python3 -m medcnn evaluate $R/$name --json > $R/$name.eval.json 2>>$R/$name.log
    python3 -c 'import json,sys
n,a,w=sys.argv[1:4]; r={"name":n,"args":a,"wall_s":int(w)}
try: e=json.load(open(f"/tmp/runs/{n}.eval.json")); r.update(test_auc=round(e["auc"],4), test_acc=round(e["acc"],4))
except Exception as x: r["eval_error"]=str(x)[:200]
try: j=json.load(open(f"/tmp/runs/{n}/run.json")); r.update({k:j.get(k) for k in ("epochs","train_seconds","precision","best_val_score","device","accelerator")})
except Exception as x: r["run_error"]=str(x)[:200]
print(json.dumps(r))' "$name" "$*" "$((e - s))" >> $OUT/summary.jsonl ) &
}
U=model.kwargs.upsample
run base organamnist
run up2 organamnist --set $U=2
run up2w1 organamnist --set $U=2 --set model.kwargs.widen_factor=1
run up2noaug organamnist --set $U=2 --set augment.preset=none
wait; echo wave1 done $(date)
run up4 organamnist --set $U=4
run up2ls1 organamnist --set $U=2 --set model.kwargs.last_stride=1
run up2ep20 organamnist --set $U=2 --set epochs=20
run pneu pneumoniamnist
wait; echo wave2 done $(date)
for f in $R/*.log; do echo "== $f"; tail -n 25 $f; done > $OUT/logs.txt
for d in $R/*/; do echo "== $d"; cat $d/run.json; done > $OUT/runs.txt 2>/dev/null
cat $OUT/summary.jsonl
