"""The classification planner's rules, re-decided on validation data only (issue #36).

Each rule is tried on and off on the datasets it was adopted for, three times each (seeds; on
BreastMNIST, whose official validation split has 78 images, three cross-validation folds of its
training + validation images instead), and scored on validation only: the test split is never
loaded. The decision rule was written down before any run (bench/results/EXPERIMENTS.md, "Planner
rules re-decided on validation"):

    a rule is shown on a dataset when its mean validation gain over the three runs (rule on minus
    rule off) is larger than the seed-to-seed spread, the standard deviation of the rule-on runs;
    it is kept when shown on at least one of its datasets and its gain is negative on none (the
    last clause added after the first results, see EXPERIMENTS.md).

Every arm starts from the current default plan (`medcnn plan`) of the dataset and changes only
what the rule sets. Run records are saved per arm and seed under OUT/ and reused when the code
that trains and scores them (TRAINING_CODE) is unchanged, so a killed run resumes and a new arm
adds only its own runs.

    .venv/bin/python bench/planner_rules.py --datasets pneumoniamnist breastmnist
    .venv/bin/python bench/planner_rules.py                      # all (about 7 h on 2 CPU cores)

Writes bench/results/planner_rules.json (per rule: each arm's validation metrics per seed, the
gain, the spread, the decision).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "bench/planner_rules.py"
SEEDS = (0, 1, 2)
CV_DATASETS = {"breastmnist"}  # validation too small: folds of train + val
ARMS = {  # dataset -> arm -> plan overrides on top of the default plan
    "pneumoniamnist": {"default": [], "unweighted": ["class_weights=[]"], "preset-default": ["augment.preset=default"]},
    "breastmnist": {"default": [], "unweighted": ["class_weights=[]"],
                    "preset-default": ["augment.preset=default"]},
    "bloodmnist": {"default": [], "no-regularisation": ["label_smoothing=0", "optim.weight_decay=1e-4"],
                   "cutmix": ["augment.cutmix=1", "epochs=26"]},
    "organamnist": {"default": [], "no-regularisation": ["label_smoothing=0", "optim.weight_decay=1e-4"],
                    "no-cutmix": ["augment.cutmix=0", "epochs=10"]},
}
RULES = [  # (rule, dataset, the arm with the rule as the planner applies it, the arm without it, metric)
    ("balanced class weights for binary tasks", "pneumoniamnist", "default", "unweighted", "acc"),
    ("balanced class weights for binary tasks", "breastmnist", "default", "unweighted", "acc"),
    ("'light' augmentation above SMALL_TRAIN = 500 training images", "breastmnist", "default", "preset-default", "auc"),
    ("'light' augmentation above SMALL_TRAIN = 500 training images", "pneumoniamnist", "default", "preset-default", "auc"),
    ("label smoothing 0.1 + weight decay 0.05 for multi-class tasks", "bloodmnist", "default", "no-regularisation", "acc"),
    ("label smoothing 0.1 + weight decay 0.05 for multi-class tasks", "organamnist", "default", "no-regularisation", "acc"),
    ("CutMix with twice the epochs for oriented multi-class images", "organamnist", "default", "no-cutmix", "acc"),
    ("no CutMix for orientation-free images", "bloodmnist", "default", "cutmix", "acc"),
]


def cv_fold(data, fold: int, folds: int = 3):
    """Train + validation images split into ``folds`` stratified folds (fixed by seed 0); fold
    ``fold`` validates, the rest trains. The test split is dropped."""
    import dataclasses

    x = np.concatenate([data.images["train"], data.images["val"]])
    y = np.concatenate([data.labels["train"], data.labels["val"]])
    rng = np.random.default_rng(0)
    part = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        part[idx] = np.arange(len(idx)) % folds
    val = part == fold
    return dataclasses.replace(data, images={"train": x[~val], "val": x[val]}, labels={"train": y[~val], "val": y[val]},
                               files={}, groups={})


TRAINING_CODE = ("src/medcnn/train", "src/medcnn/models", "src/medcnn/planning", "src/medcnn/transforms",
                 "src/medcnn/data", "src/medcnn/plan.py", "src/medcnn/plan_migrations.py", "src/medcnn/tasks/base.py",
                 "src/medcnn/tasks/classify/module.py", "src/medcnn/metrics",
                 "src/medcnn/infer/predictor.py", "src/medcnn/io", "pyproject.toml")
"""What a run's validation numbers depend on: a record measured where these were the same is reused
(so adding an arm or a rule to this script, or changing unrelated code, re-runs nothing)."""


def reusable(path: Path, sets: list[str], overrides: list[str]) -> dict | None:
    import subprocess

    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    commit = rec.get("commit", "")
    if rec.get("plan_overrides") != sets or rec.get("overrides") != overrides or not commit or commit.endswith("-dirty"):
        return None
    same = subprocess.run(["git", "diff", "--quiet", commit, "--", *TRAINING_CODE], cwd=ROOT, capture_output=True)
    return rec if same.returncode == 0 else None


def run_arm(dataset: str, arm: str, seed: int, out: Path, sets: list[str], meta: dict) -> dict:
    from medcnn.data.classification import load_classification
    from medcnn.metrics.classification import classification_report
    from medcnn.planning import default_plan
    from medcnn.tasks import load_model, train

    rec_path = out / dataset / arm / f"seed{seed}.json"
    rec = reusable(rec_path, sets, ARMS[dataset][arm])
    if rec is not None:
        return rec
    full = load_classification(dataset)
    plan = default_plan(full, dataset).override([*ARMS[dataset][arm], f"seed={seed}", *sets])
    if dataset in CV_DATASETS:
        data = cv_fold(full, seed)  # repeat k: fold k validates, trained with seed k
    else:
        data = dataclasses_without_test(full)
    run = train(plan, data, out / dataset / arm / f"seed{seed}", overwrite=True, progress=False)
    pred = load_model(run)
    x, y = data.split("val")
    report = classification_report(pred.predict_array(x), y, plan.label_type, plan.class_names)
    info = json.loads((run / "run.json").read_text())
    rec = {"dataset": dataset, "arm": arm, "seed": seed, "overrides": ARMS[dataset][arm],
           "val": {k: round(float(report[k]), 5) for k in ("auc", "acc", "ece", "brier")},
           "val_n": int(len(y)), "cv_fold": seed if dataset in CV_DATASETS else None,
           "epochs": plan.epochs, "ensemble": plan.ensemble, "seconds": info.get("train_seconds"), **meta}
    common.save_record(rec_path, rec)
    return rec


def dataclasses_without_test(data):
    """The dataset without its test split, so nothing here can read it."""
    import dataclasses

    return dataclasses.replace(data, images={s: v for s, v in data.images.items() if s != "test"},
                               labels={s: v for s, v in data.labels.items() if s != "test"})


def decide(records: list[dict]) -> list[dict]:
    """Each rule with its evidence and the decision (see the module docstring)."""
    by = {(r["dataset"], r["arm"]): {} for r in records}
    for r in records:
        by[(r["dataset"], r["arm"])][r["seed"]] = r["val"]
    out = []
    for rule, dataset, on, off, metric in RULES:
        a, b = by.get((dataset, on), {}), by.get((dataset, off), {})
        seeds = sorted(set(a) & set(b))
        if len(seeds) < len(SEEDS):
            continue
        on_v = np.array([a[s][metric] for s in seeds])
        off_v = np.array([b[s][metric] for s in seeds])
        gain, spread = float(np.mean(on_v - off_v)), float(np.std(on_v, ddof=1))
        out.append({"rule": rule, "dataset": dataset, "metric": f"val {metric}", "with_rule": on, "without": off,
                    "on": [round(v, 5) for v in on_v], "off": [round(v, 5) for v in off_v],
                    "gain": round(gain, 5), "spread": round(spread, 5),
                    "decision": "shown" if gain > spread else "not shown"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap, "planner_rules")
    ap.add_argument("--datasets", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--arms", nargs="+", help="only these arms (default: all of each dataset)")
    args = ap.parse_args()
    meta = common.run_meta(SCRIPT, args.sets)  # the code as it was when the bench started
    records = []
    for dataset in args.datasets:
        for arm in ARMS[dataset]:
            if args.arms and arm not in args.arms:
                continue
            for seed in SEEDS:
                rec = run_arm(dataset, arm, seed, args.out, args.sets, meta)
                print(f"{dataset:15s} {arm:18s} seed {seed}: val " +
                      "  ".join(f"{k} {v:.4f}" for k, v in rec["val"].items()), flush=True)
                records.append(rec)
    old = json.loads(args.results.read_text()) if args.results.is_file() else {"runs": []}
    keep = [r for r in old["runs"] if (r["dataset"], r["arm"], r["seed"]) not in
            {(r["dataset"], r["arm"], r["seed"]) for r in records}]
    runs = keep + records
    result = {"rule": "a rule is shown on a dataset when its mean validation gain over 3 runs exceeds the std of the "
                      "rule-on runs; kept when shown on at least one of its datasets and negative on none",
              "decisions": decide(runs), "runs": runs}
    common.save_record(args.results, result)
    for d in result["decisions"]:
        print(f"{d['decision']:9s} {d['rule']} [{d['dataset']}, {d['metric']}]: gain {d['gain']:+.4f}, "
              f"spread {d['spread']:.4f}")


if __name__ == "__main__":
    main()
