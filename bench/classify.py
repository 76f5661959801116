"""Train + evaluate the default plan on each MedMNIST dataset we hold; the README's table comes from here.

    make bench-classify                     # all five datasets
    .venv/bin/python bench/classify.py --datasets breastmnist --out runs/bench-classify

Writes OUT/results.json and OUT/results.md (with the commit and command) and prints the table.
Checkpoints are chosen on validation AUC; test is evaluated once, at the end.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

DATASETS = ["breastmnist", "pneumoniamnist", "bloodmnist", "organamnist", "adrenalmnist3d"]


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-classify"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="plan override key=value for every run")
    args = ap.parse_args()

    import torch

    from medcnn.data.catalog import paper_reference
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks.evaluate_classify import evaluate_run
    from medcnn.train.engine import train

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        t0 = time.perf_counter()
        data = load_classification(name)
        plan = default_plan(data, name).override([f"seed={args.seed}", *args.sets])
        run = train(plan, data, args.out / name, overwrite=True, progress=False)
        info = json.loads((run / "run.json").read_text())
        rep = evaluate_run(run, "test")
        ref = paper_reference(name)
        row = {"dataset": name, "model": plan.model.name, "input": plan.preprocessing.input_size,
               "epochs": plan.epochs, "n_train": len(data.labels["train"]), "test_auc": round(rep["auc"], 4),
               "test_acc": round(rep["acc"], 4), "test_ece": round(rep["ece"], 4),
               "best_val_auc": info["best_val_score"], "train_seconds": info["train_seconds"],
               "total_seconds": round(time.perf_counter() - t0, 1), "paper": ref}
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"commit": _commit(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d"), "seed": args.seed}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = [f"Commit `{meta['commit']}`, `{meta['command']}`, torch {meta['torch']}, {meta['threads']} threads, {meta['date']}.", "",
          "| dataset | model (input) | epochs | test AUC | test ACC | paper ResNet-18 (28) AUC / ACC | train time |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r["paper"].get("ResNet-18 (28)") or r["paper"].get("ResNet-18 + 3D")
        ref_s = f"{ref[0]:.3f} / {ref[1]:.3f}" if ref else "-"
        md.append(f"| {r['dataset']} | {r['model']} ({'×'.join(map(str, r['input']))}) | {r['epochs']} | "
                  f"{r['test_auc']:.3f} | {r['test_acc']:.3f} | {ref_s} | {r['train_seconds'] / 60:.1f} min |")
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
