"""The transfer-learning benchmark behind the README's label-efficiency plots (issue #6).

Classification part: for each dataset, fraction of the training labels (stratified, seeded) and
seed, a classifier with the default plan (one member, no ensemble) trained from scratch and one
fine-tuned from the medcnn-pretrained backbone; test AUC. The backbone is `medcnn pretrain` on
the pooled train/val images of the MedMNIST 2D datasets (never their test splits), made first
if OUT/backbone is absent. Augmentation ablation: presets none/light/default/heavy at 10 % of the
labels, from scratch.

    make bench-transfer
    .venv/bin/python bench/transfer.py --datasets breastmnist --fractions 0.1 1 --seeds 0   # a quick check

Each finished run is saved under OUT/ and reused when the code is unchanged since (`--fresh`
re-runs). Writes bench/results/transfer.json, bench/results/transfer_<dataset>.png and the
README table between the bench-transfer markers.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

START, END = "<!-- bench-transfer:start -->", "<!-- bench-transfer:end -->"
DATASETS = ["breastmnist", "pneumoniamnist"]
FRACTIONS = [0.01, 0.05, 0.1, 0.25, 1.0]
POOL = ["pneumoniamnist", "breastmnist", "organamnist", "bloodmnist"]  # train + val splits only
PRESETS = ["none", "light", "default", "heavy"]
SCRIPT = "bench/transfer.py"


def backbone(out: Path, sets: list[str], fresh: bool) -> Path:
    """The pretrained run folder (made by `medcnn pretrain` when absent or stale)."""
    from medcnn.cli.main import main as cli

    run = out / "backbone"
    rec = common.load_reusable(out / "backbone.json", [], SCRIPT) if not fresh else None
    if rec and (run / "checkpoints" / "best.ckpt").is_file():
        return run
    args = ["pretrain", *POOL, "--out", str(run), "--overwrite", "--no-progress", *sum((["--set", s] for s in sets), [])]
    t0 = time.perf_counter()
    if cli(args) != 0:
        sys.exit("pretraining failed")
    common.save_record(out / "backbone.json", {"command": "medcnn " + " ".join(args), "plan_overrides": [],
                                               "minutes": round((time.perf_counter() - t0) / 60, 2),
                                               **common.run_meta(SCRIPT, [])})
    return run


def one_run(name: str, fraction: float, seed: int, init: str, augment: str | None, out: Path) -> dict:
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks.evaluate_classify import evaluate_run
    from medcnn.train.engine import train
    from medcnn.transforms.augment import preset

    data = load_classification(name).label_subset(fraction, seed)
    plan = default_plan(data, name).override([f"seed={seed}", "ensemble=1"])
    if augment is not None:
        plan.augment = preset(augment)
    if init != "scratch":
        plan = plan.override([f"transfer.pretrained={init}"])
    tag = f"{'aug-' + augment if augment else init if init == 'scratch' else 'pretrained'}_f{fraction:g}_s{seed}"
    t0 = time.perf_counter()
    run = train(plan, data, out / name / tag, overwrite=True, progress=False)
    rep = evaluate_run(run, "test")
    return {"dataset": name, "fraction": fraction, "seed": seed, "init": init, "augment": plan.augment.preset,
            "n_train": int(len(data.labels["train"])), "epochs": plan.epochs, "test_auc": round(rep["auc"], 4),
            "test_acc": round(rep["acc"], 4), "minutes": round((time.perf_counter() - t0) / 60, 2)}


def cached(path: Path, fresh: bool, fn) -> dict:
    rec = None if fresh else common.load_reusable(path, [], SCRIPT)
    if rec is None:
        rec = {**fn(), "plan_overrides": [], **common.run_meta(SCRIPT, [])}
        common.save_record(path, rec)
    return rec


def summarise(runs: list[dict], keys: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for k, rs in groups.items():
        auc = np.array([r["test_auc"] for r in rs])
        out.append({"task": "classify", **dict(zip(keys, k)), "metric": "auc", "mean": round(float(auc.mean()), 4),
                    "std": round(float(auc.std()), 4), "seeds": [r["seed"] for r in rs],
                    "n_train": rs[0]["n_train"], "commit": rs[0]["commit"], "command": rs[0]["command"]})
    return out


def plot(records: list[dict], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for init, label in (("scratch", "from scratch"), ("pretrained", "fine-tuned from medcnn pretrain")):
        rs = sorted((r for r in records if r["dataset"] == name and r.get("init_kind") == init),
                    key=lambda r: r["fraction"])
        if rs:
            ax.errorbar([r["fraction"] * 100 for r in rs], [r["mean"] for r in rs], yerr=[r["std"] for r in rs],
                        marker="o", capsize=3, label=label)
    ax.set_xscale("log"), ax.set_xlabel("training labels used (%)"), ax.set_ylabel("test AUC")
    ax.set_title(f"{name}: label efficiency (mean ± std, 3 seeds)", fontsize=9), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    from medcnn.utils.files import atomic_savefig

    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def table(records: list[dict]) -> str:
    lines = ["| dataset | labels | n train | scratch AUC | pretrained AUC | commit |", "|---|---|---|---|---|---|"]
    eff = [r for r in records if "fraction" in r and "augment" not in r]
    for name in sorted({r["dataset"] for r in eff}):
        for f in sorted({r["fraction"] for r in eff if r["dataset"] == name}):
            row = {r["init_kind"]: r for r in eff if r["dataset"] == name and r["fraction"] == f}
            s, p = row.get("scratch"), row.get("pretrained")
            fmt = lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}" if r else "–"  # noqa: E731
            lines.append(f"| {name} | {f * 100:g} % | {(s or p)['n_train']} | {fmt(s)} | {fmt(p)} | `{(s or p)['commit']}` |")
    aug = [r for r in records if "augment" in r]
    if aug:
        lines += ["", "| dataset (10 % of labels, scratch) | augment preset | AUC | commit |", "|---|---|---|---|"]
        for r in aug:
            lines.append(f"| {r['dataset']} | {r['augment']} | {r['mean']:.3f} ± {r['std']:.3f} | `{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    return "\n".join(lines + ["", "Command(s): " + "; ".join(f"`{c}`" for c in cmds) + "."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--fractions", nargs="+", type=float, default=FRACTIONS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--part", choices=["all", "labels", "augment"], default="all")
    ap.add_argument("--fresh", action="store_true", help="re-run everything, even unchanged finished runs")
    common.add_common_args(ap, "transfer")
    args = ap.parse_args()

    records = []
    if args.part in ("all", "labels"):
        bb = backbone(args.out, args.sets, args.fresh)
        runs = []
        for name in args.datasets:
            for f in args.fractions:
                for seed in args.seeds:
                    for init in ("scratch", str(bb)):
                        kind = "scratch" if init == "scratch" else "pretrained"
                        path = args.out / name / f"{kind}_f{f:g}_s{seed}.json"
                        r = cached(path, args.fresh, lambda: one_run(name, f, seed, init, None, args.out))
                        runs.append({**r, "init_kind": kind})
                        print(json.dumps({k: r[k] for k in ("dataset", "fraction", "seed", "init", "test_auc")}), flush=True)
        recs = summarise(runs, ("dataset", "fraction", "init_kind", "init"))
        records += recs
        for name in args.datasets:
            plot(recs, name, common.ROOT / "bench" / "results" / f"transfer_{name}.png")
    if args.part in ("all", "augment"):
        runs = []
        for name in args.datasets:
            for a in PRESETS:
                for seed in args.seeds:
                    path = args.out / name / f"aug-{a}_f0.1_s{seed}.json"
                    runs.append(cached(path, args.fresh, lambda: one_run(name, 0.1, seed, "scratch", a, args.out)))
        records += summarise(runs, ("dataset", "augment"))
    common.save_record(args.results, records)
    common.update_readme(args.readme, START, END, table(records))
    print(table(records))


if __name__ == "__main__":
    main()
