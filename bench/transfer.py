"""The transfer-learning benchmark behind the README's label-efficiency plots (issue #6).

Classification part: for each dataset, fraction of the training and validation labels (stratified,
seeded; the test split whole) and seed, a classifier with the default plan (one member, no ensemble) trained from scratch and one
fine-tuned from the medcnn-pretrained backbone; test AUC. The backbone is `medcnn pretrain` on
the pooled train/val images of the MedMNIST 2D datasets (never their test splits), made (as OUT/backbone)
the first time a run from it is not finished yet. A third start: SqueezeNet 1.1 with ImageNet weights (`squeezenet1_1.imagenet`;
the plan follows its network and normalisation), at the input size its validation AUC chooses first
(part `imagenet-size`: the 28-px image as it is, or upsampled x4 inside the network, full labels,
3 seeds, validation only). Augmentation ablation: presets none/light/default/heavy at 10 % of the
labels, from scratch.

Segmentation part (MSD Hippocampus, $MEDCNN_DATA/msd_task04_hippocampus): the same fractions of
the training cases (val and test cases fixed), the default plan at a SEG_MINUTES time budget per
run, from scratch and fine-tuned from `medcnn pretrain HIPPOCAMPUS` (restoration pretraining of
the same U-Net on the training cases and the 130 unlabelled imagesTs volumes, never val or test);
test Dice (mean over labels). Its ablation adds the segmentation plan's own augmentation
("planned") to the presets.

    make bench-transfer
    .venv/bin/python bench/transfer.py --datasets breastmnist --fractions 0.1 1 --seeds 0   # a quick check
    .venv/bin/python bench/transfer.py --part segment                                      # hippocampus only

Each finished run is saved under OUT/ and reused when the code is unchanged since (`--fresh`
re-runs). Writes bench/results/transfer.json, bench/results/transfer_<dataset>.png and the
README table between the bench-transfer markers.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
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
IMAGENET = "squeezenet1_1.imagenet"
UPSAMPLE = (1, 4)  # SqueezeNet's pools leave 1x1 of a 28-px image; x4 leaves 6x6
SCRIPT = "bench/transfer.py"
SEG = "hippocampus"  # the segmentation dataset (MSD Task04 under $MEDCNN_DATA)
SEG_MINUTES = 4.0  # training budget of every segmentation run (the full default plan takes 30)
SEG_PRESETS = ["none", "light", "default", "heavy", "planned"]  # planned: the segmentation plan's own


def seg_path() -> Path:
    import os

    p = Path(os.environ.get("MEDCNN_DATA", "../shared/data")) / "msd_task04_hippocampus"
    if not (p / "dataset.json").is_file():
        sys.exit(f"{p}: MSD Task04 Hippocampus not found (set MEDCNN_DATA)")
    return p


def backbone(out: Path, sets: list[str], fresh: bool, name: str = "backbone", sources: list[str] = POOL) -> Path:
    """The pretrained run folder OUT/NAME (made by `medcnn pretrain SOURCES` when absent or stale)."""
    from medcnn.cli.main import main as cli

    run = out / name
    rec = common.load_reusable(out / f"{name}.json", [], SCRIPT) if not fresh else None
    if rec and (run / "checkpoints" / "best.ckpt").is_file():
        return run
    args = ["pretrain", *sources, "--out", str(run), "--overwrite", "--no-progress", *sum((["--set", s] for s in sets), [])]
    t0 = time.perf_counter()
    if cli(args) != 0:
        sys.exit("pretraining failed")
    common.save_record(out / f"{name}.json", {**common.run_meta(SCRIPT, []), "command": "medcnn " + " ".join(args),
                                               "minutes": round((time.perf_counter() - t0) / 60, 2)})
    return run


def variant(plan, fraction: float, seed: int, init: str, augment: str | None):
    """The plan with the augmentation preset (None / "planned": the plan's own) and the pretrained
    source applied, and the run's folder name."""
    from medcnn.transforms.augment import preset

    if augment not in (None, "planned"):
        plan.augment = preset(augment)
    if init != "scratch":
        plan = plan.override([f"transfer.pretrained={init}"])
    kind = "aug-" + augment if augment else init_kind(init)
    return plan, f"{kind}_f{fraction:g}_s{seed}"


def init_kind(init: str) -> str:
    return "scratch" if init == "scratch" else "imagenet" if init == IMAGENET else "pretrained"


def imagenet_size(name: str, upsample: float, seed: int, out: Path) -> dict:
    """Validation AUC of SqueezeNet from ImageNet weights with all labels at one input scale (the
    test split is not read)."""
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks import train

    data = load_classification(name)
    plan = default_plan(data, name).override([f"seed={seed}", "ensemble=1", f"model.kwargs.upsample={upsample}",
                                              f"transfer.pretrained={IMAGENET}"])
    run = train(plan, data, out / name / f"imagenet-size-x{upsample:g}_s{seed}", overwrite=True, progress=False)
    info = json.loads((run / "run.json").read_text())
    return {"task": "classify", "part": "imagenet-size", "dataset": name, "upsample": upsample, "seed": seed,
            "val_auc": round(float(info["best_val_score"]), 5), "minutes": round(info["train_seconds"] / 60, 2)}


def choose_upsample(runs: list[dict]) -> dict[str, float]:
    """Per dataset, the input scale with the best mean validation AUC over the seeds (x1 on a tie)."""
    out = {}
    for name in sorted({r["dataset"] for r in runs}):
        means = {u: np.mean([r["val_auc"] for r in runs if r["dataset"] == name and r["upsample"] == u])
                 for u in sorted({r["upsample"] for r in runs if r["dataset"] == name})}
        out[name] = max(means, key=lambda u: (means[u], -u))
    return out


def one_run(name: str, fraction: float, seed: int, init: str, augment: str | None, out: Path,
            predictions: Path, upsample: float = 1) -> dict:
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks import evaluate, train

    data = load_classification(name).label_subset(fraction, seed)
    plan = default_plan(data, name).override([f"seed={seed}", "ensemble=1"] +
                                             ([f"model.kwargs.upsample={upsample}"] if init == IMAGENET else []))
    plan, tag = variant(plan, fraction, seed, init, augment)
    t0 = time.perf_counter()
    run = train(plan, data, out / name / tag, overwrite=True, progress=False)
    rep = evaluate(run, "test")
    kept = predictions / f"transfer-{name}-{tag}.npz"  # test probabilities: intervals without retraining
    common.save_predictions(kept, np.load(run / "eval" / "test_probs.npy"), data.labels["test"])
    return {"task": "classify", "dataset": name, "fraction": fraction, "seed": seed, "init": init,
            "predictions": kept.name,
            "augment": plan.augment.preset, "n_train": int(len(data.labels["train"])), "epochs": plan.epochs,
            "test_auc": round(rep["auc"], 4), "test_acc": round(rep["acc"], 4),
            "minutes": round((time.perf_counter() - t0) / 60, 2)}


def seg_run(fraction: float, seed: int, init: str, augment: str | None, out: Path, predictions: Path) -> dict:
    """One hippocampus run: default plan, SEG_MINUTES, ``fraction`` of the training cases; test Dice."""
    from medcnn.data.segmentation import load_segmentation
    from medcnn.plan import Plan
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import evaluate, train

    path = seg_path()
    data = load_segmentation(path)
    plan = default_plan(data, str(path)).override([f"seed={seed}", f"max_minutes={SEG_MINUTES}",
                                                   f"segment.split.train_fraction={fraction}"])
    plan, tag = variant(plan, fraction, seed, init, augment)
    t0 = time.perf_counter()
    run = train(plan, data, out / SEG / tag, overwrite=True, progress=False)
    rep = evaluate(run, "test", overlays=0)
    split = json.loads((run / "split.json").read_text())
    kept = predictions / f"transfer-{SEG}-{tag}-cases.csv"  # per-case metrics: intervals without retraining
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "eval" / "test_cases.csv", kept)
    return {"task": "segment", "dataset": SEG, "fraction": fraction, "seed": seed, "init": init,
            "predictions": kept.name,
            "augment": augment or plan.augment.preset, "n_train": len(split["train"]),
            "epochs": Plan.load(run / "plan.yaml").epochs, "test_dice": round(rep["dice_mean"], 4),
            "minutes": round((time.perf_counter() - t0) / 60, 2)}


def after(first, fn, *args):
    """``fn(*args)``, once ``first()`` (when given) has run: a run from the pretrained backbone
    makes the backbone first, so that one whose record is kept never needs it."""
    if first is not None:
        first()
    return fn(*args)


def cached(path: Path, fresh: bool, fn) -> dict:
    rec = None if fresh else common.load_reusable(path, [], SCRIPT)
    if rec is None:
        rec = {**fn(), "plan_overrides": [], **common.run_meta(SCRIPT, [])}
        common.save_record(path, rec)
    return rec


def case_scores(files: list[Path], metric: str) -> np.ndarray:
    """(cases, seeds): each segmentation run's per-case ``metric`` (mean over labels) from its kept CSV."""
    import csv

    per_seed = []
    for f in files:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        cols = [c for c in rows[0] if c.endswith(f"_{metric}")]
        per_seed.append([np.nanmean([float(r[c]) for c in cols]) for r in rows])
    return np.array(per_seed).T


def kept_files(runs: list[dict], predictions: Path) -> list[Path] | None:
    files = [predictions / r["predictions"] for r in runs if r.get("predictions")]
    return files if len(files) == len(runs) and all(f.is_file() for f in files) else None


def seed_mean_ci(runs: list[dict], predictions: Path, labels=None, metric: str = "dice") -> list[float] | None:
    """95 % interval of the seed-mean test metric: a bootstrap over the test images (stratified by
    class) or cases, every seed scored on the same resample; None when a run kept no predictions.
    ``labels``: a classification's test labels (default: its dataset's); ``metric``: a segmentation's
    per-case column (dice, nsd)."""
    files = kept_files(runs, predictions)
    if files is None:
        return None
    if runs[0].get("task", "classify") == "segment":
        from medcnn.metrics.intervals import mean_ci

        ci = mean_ci(case_scores(files, metric))
    else:
        from medcnn.data.classification import load_classification
        from medcnn.metrics.classification import classification_intervals

        labels = load_classification(runs[0]["dataset"]).labels["test"] if labels is None else labels
        ci = classification_intervals(*common.load_predictions(files, labels))["auc"]
    return [round(v, 4) for v in ci] if ci else None


def summarise(runs: list[dict], keys: tuple[str, ...], predictions: Path | None = None) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for k, rs in groups.items():
        task = rs[0].get("task", "classify")
        metric = "dice" if task == "segment" else "auc"
        v = np.array([r[f"test_{metric}"] for r in rs])
        extra = {}
        files = kept_files(rs, predictions) if predictions and task == "segment" else None
        if files:  # normalised surface Dice beside Dice, from the same per-case files
            extra = {"nsd": round(float(np.nanmean(case_scores(files, "nsd"))), 4),
                     "nsd_ci95": seed_mean_ci(rs, predictions, metric="nsd")}
        out.append({"task": task, **dict(zip(keys, k)), "metric": metric, "mean": round(float(v.mean()), 4),
                    "std": round(float(v.std()), 4), "ci95": seed_mean_ci(rs, predictions) if predictions else None,
                    **extra,
                    "minutes": round(float(np.mean([r.get("minutes", np.nan) for r in rs])), 2),
                    "seeds": [r["seed"] for r in rs],
                    "n_train": rs[0]["n_train"], "commit": rs[0]["commit"], "command": this_command()})
    return out


def this_command() -> str:
    """The command that made a summary record: it re-creates the record, re-running whichever of
    its runs it finds no reusable result for (the runs may have been made by narrower commands,
    e.g. one dataset each, side by side)."""
    return " ".join(["python", SCRIPT, *sys.argv[1:]])


def plot(records: list[dict], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for init, label in KINDS.items():
        rs = sorted((r for r in records if r["dataset"] == name and r.get("init_kind") == init),
                    key=lambda r: r["fraction"])
        if rs:
            ax.errorbar([r["fraction"] * 100 for r in rs], [r["mean"] for r in rs], yerr=[r["std"] for r in rs],
                        marker="o", capsize=3, label=label)
    metric = next((r["metric"] for r in records if r["dataset"] == name), "auc")
    ax.set_xscale("log"), ax.set_xlabel("training labels used (%)")
    ax.set_ylabel("test Dice (mean over labels)" if metric == "dice" else "test AUC")
    ax.set_title(f"{name}: label efficiency (mean ± std, 3 seeds)", fontsize=9), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    from medcnn.utils.files import atomic_savefig

    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


METRIC = {"auc": "AUC", "dice": "Dice"}
KINDS = {"scratch": "from scratch", "imagenet": "ImageNet SqueezeNet 1.1", "pretrained": "fine-tuned from medcnn pretrain"}


def goal(eff: list[dict], name: str) -> str:
    """The label-efficiency goal (issues #6, #37) for one dataset, measured ('' when a point is
    missing): a pretrained start at 10 % of the labels reaches 95 % of the best full-label mean and
    beats scratch by more than the larger seed std."""
    at = {(r["fraction"], r["init_kind"]): r for r in eff if r["dataset"] == name}
    s10 = at.get((0.1, "scratch"))
    starts = [at[(0.1, k)] for k in ("pretrained", "imagenet") if (0.1, k) in at]
    full = [r["mean"] for k, r in at.items() if k[0] == 1.0]
    if not (s10 and starts and full):
        return ""
    p10 = max(starts, key=lambda r: r["mean"])
    share, gain, spread = p10["mean"] / max(full), p10["mean"] - s10["mean"], max(s10["std"], p10["std"])
    met = share >= 0.95 and gain > spread
    return (f"{name}: {KINDS[p10['init_kind']]} at 10 % = {p10['mean']:.3f}, {share * 100:.1f} % of the full-label "
            f"{METRIC[p10['metric']]} {max(full):.3f}; gain over scratch {gain:+.3f} vs spread {spread:.3f}: "
            f"**{'met' if met else 'not met'}**")


def ci(r: dict) -> str:
    return f" [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r.get("ci95") else ""


def nsd(r: dict) -> str:
    """A segmentation record's normalised surface Dice, where it has one."""
    return f"; NSD {r['nsd']:.3f}" if r.get("nsd") is not None else ""


def table(records: list[dict]) -> str:
    lines = ["| dataset | metric | labels | n train | " + " | ".join(KINDS.values()) + " | commit |",
             "|---|---|---|---|---|---|---|---|"]
    eff = [r for r in records if "fraction" in r and "augment" not in r]
    fmt = lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}{ci(r)}{nsd(r)}" if r else "–"  # noqa: E731
    for name in sorted({r["dataset"] for r in eff}):
        for f in sorted({r["fraction"] for r in eff if r["dataset"] == name}):
            row = {r["init_kind"]: r for r in eff if r["dataset"] == name and r["fraction"] == f}
            r = next(iter(row.values()))
            lines.append(f"| {name} | test {METRIC[r['metric']]} | {f * 100:g} % | {r['n_train']} | "
                         + " | ".join(fmt(row.get(k)) for k in KINDS) + f" | `{r['commit']}` |")
    goals = [g for g in (goal(eff, name) for name in sorted({r["dataset"] for r in eff})) if g]
    if goals:
        lines += ["", "Goal: with 10 % of the labels (training and validation), a pretrained start "
                  "reaches >= 95 % of the best full-label mean and beats scratch by more than the larger seed std."]
        lines += [f"- {g}" for g in goals]
    for r in records:
        if r.get("part") == "imagenet-size":
            lines += ["", "ImageNet SqueezeNet's input scale, chosen on validation AUC (full labels, seeds "
                      f"{sorted({x['seed'] for x in r['runs']})}): " + "; ".join(
                          f"{n} x{u:g}" for n, u in sorted(r["chosen"].items())) + f" (`{r['commit']}`)."]
    aug = [r for r in records if "augment" in r]
    if aug:
        lines += ["", "| dataset (10 % of labels, scratch) | augment preset | test metric | commit |", "|---|---|---|---|"]
        for r in aug:
            lines.append(f"| {r['dataset']} | {r['augment']} | {METRIC[r['metric']]} "
                         f"{r['mean']:.3f} ± {r['std']:.3f}{ci(r)}{nsd(r)} | `{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    return "\n".join(lines + ["", "mean ± std over seeds; [95 % CI] where a record has one: the seed-mean's bootstrap "
                              "interval over the test images / cases. Command(s): " + "; ".join(f"`{c}`" for c in cmds) + "."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--fractions", nargs="+", type=float, default=FRACTIONS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--part", choices=["all", "labels", "imagenet-size", "augment", "segment", "segment-augment"],
                    default="all",
                    help="labels / augment: the classification parts (labels runs imagenet-size first); segment: "
                         "hippocampus (both studies); segment-augment: its augmentation ablation only")
    ap.add_argument("--fresh", action="store_true", help="re-run everything, even unchanged finished runs")
    common.add_common_args(ap, "transfer")
    args = ap.parse_args()

    records = []
    predictions = args.results.parent / "predictions"
    upsample = {}
    if args.part in ("all", "labels", "imagenet-size"):  # decided on validation before any ImageNet test run
        size_runs = []
        for name in args.datasets:
            for u in UPSAMPLE:
                for seed in args.seeds:
                    path = args.out / name / f"imagenet-size-x{u:g}_s{seed}.json"
                    size_runs.append(cached(path, args.fresh, lambda: imagenet_size(name, u, seed, args.out)))
        upsample = choose_upsample(size_runs)
        records.append({"task": "classify", "part": "imagenet-size", "runs": size_runs, "chosen": upsample,
                        "rule": "the input scale with the best mean validation AUC over the seeds (x1 on a tie)",
                        "commit": size_runs[0]["commit"], "command": this_command()})
        print("ImageNet SqueezeNet input scale chosen on validation:", upsample, flush=True)
    if args.part in ("all", "labels"):
        bb = args.out / "backbone"  # made (once) only when a run that needs it is not finished yet
        need_bb = functools.cache(lambda: backbone(args.out, args.sets, args.fresh))
        runs = []
        for name in args.datasets:
            for f in args.fractions:
                for seed in args.seeds:
                    for init in ("scratch", str(bb), IMAGENET):
                        kind = init_kind(init)
                        path = args.out / name / f"{kind}_f{f:g}_s{seed}.json"
                        r = cached(path, args.fresh, lambda: after(need_bb if kind == "pretrained" else None,
                                                                  one_run, name, f, seed, init, None, args.out,
                                                                  predictions, upsample.get(name, 1)))
                        runs.append({**r, "init_kind": kind})
                        print(json.dumps({k: r[k] for k in ("dataset", "fraction", "seed", "init", "test_auc")}), flush=True)
        recs = summarise(runs, ("dataset", "fraction", "init_kind", "init"), predictions)
        records += recs
        for name in args.datasets:
            plot(recs, name, common.ROOT / "bench" / "results" / f"transfer_{name}.png")
    if args.part in ("all", "augment"):
        runs = []
        for name in args.datasets:
            for a in PRESETS:
                for seed in args.seeds:
                    path = args.out / name / f"aug-{a}_f0.1_s{seed}.json"
                    runs.append(cached(path, args.fresh, lambda: one_run(name, 0.1, seed, "scratch", a, args.out, predictions)))
        records += summarise(runs, ("dataset", "augment"), predictions)
    if args.part in ("all", "segment"):
        bb = args.out / "seg-backbone"
        need_bb = functools.cache(lambda: backbone(args.out, [], args.fresh, name="seg-backbone",
                                                   sources=[str(seg_path())]))
        runs = []
        for f in args.fractions:
            for seed in args.seeds:
                for init in ("scratch", str(bb)):
                    kind = "scratch" if init == "scratch" else "pretrained"
                    path = args.out / SEG / f"{kind}_f{f:g}_s{seed}.json"
                    r = cached(path, args.fresh, lambda: after(need_bb if kind == "pretrained" else None,
                                                              seg_run, f, seed, init, None, args.out, predictions))
                    runs.append({**r, "init_kind": kind})
                    print(json.dumps({k: r[k] for k in ("dataset", "fraction", "seed", "init", "test_dice")}), flush=True)
        recs = summarise(runs, ("dataset", "fraction", "init_kind", "init"), predictions)
        records += recs
        plot(recs, SEG, common.ROOT / "bench" / "results" / f"transfer_{SEG}.png")
    if args.part in ("all", "segment", "segment-augment"):
        runs = []
        for a in SEG_PRESETS:
            for seed in args.seeds:
                # the plan's own augmentation is the label-efficiency study's scratch run at 10 % (one cache)
                name = "scratch" if a == "planned" else f"aug-{a}"
                path = args.out / SEG / f"{name}_f0.1_s{seed}.json"
                # with --fresh, the label-efficiency part (when it ran) has just re-made the planned run
                fresh = args.fresh and not (a == "planned" and args.part != "segment-augment")
                r = cached(path, fresh, lambda: seg_run(0.1, seed, "scratch", None if a == "planned" else a, args.out,
                                                      predictions))
                runs.append({**r, "augment": a})
                print(json.dumps({k: r[k] for k in ("dataset", "seed", "augment", "test_dice")}), flush=True)
        records += summarise(runs, ("dataset", "augment"), predictions)
    study = lambda r: (r.get("task", "classify"), "augment" in r, r.get("part", ""))  # noqa: E731
    done = {study(r) for r in records}  # the studies run now replace their old records
    old = json.loads(args.results.read_text()) if args.results.is_file() else []
    records = [r for r in old if study(r) not in done] + records
    records.sort(key=study)
    common.save_record(args.results, records)
    common.update_readme(args.readme, START, END, table(records))
    print(table(records))


if __name__ == "__main__":
    main()
