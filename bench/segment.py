"""The segmentation benchmark behind the README's segmentation table (issue #4).

For each dataset: plan with the default planner (`medcnn plan`), train on the planned split
(checkpoint and post-processing chosen on validation cases), evaluate the held-out test cases:
MSD Hippocampus (seeded 80/20 split of the 260 labelled cases; ids in RUN/split.json) and DRIVE
(official 20 training / 20 test images; F1, AUC, ACC inside the field of view).

    make bench-segment
    .venv/bin/python bench/segment.py --datasets hippocampus --set epochs=5   # a quick, non-default check

Writes bench/results/segment.json (one record per dataset, merged), the README table between the
bench-segment markers, and every run folder under OUT/<dataset>/.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
DATASETS = {"hippocampus": "msd_task04_hippocampus", "drive": "drive"}
START, END = "<!-- bench-segment:start -->", "<!-- bench-segment:end -->"
REFERENCE = {  # what the issue compares against
    "hippocampus": "nnU-Net Dice ≈ 0.90 / 0.89 (anterior / posterior)",
    "drive": "U-Net F1 0.825, AUC ≈ 0.98; 2nd observer ACC 0.947",
}


def data_path(name: str) -> Path:
    root = os.environ.get("MEDCNN_DATA")
    if not root:
        sys.exit("set MEDCNN_DATA to the data folder (it holds msd_task04_hippocampus/ and drive/)")
    p = Path(root) / DATASETS[name]
    if not p.is_dir():
        sys.exit(f"{p}: not found")
    return p


def run_one(name: str, out: Path, sets: list[str], predictions: Path) -> dict:
    from medcnn.data.segmentation import load_segmentation
    from medcnn.plan import Plan
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import evaluate, train

    path = data_path(name)
    data = load_segmentation(path)
    plan = default_plan(data, str(path)).override(sets)
    run = train(plan, data, out / name, overwrite=True, progress=False)
    info = json.loads((run / "run.json").read_text())
    plan = Plan.load(run / "plan.yaml")  # the epochs actually trained (cut to the time budget)
    member_epochs = [Plan.load(run / m["dir"] / "plan.yaml").epochs for m in info.get("members", [])]
    rep = evaluate(run, "test")
    predictions.mkdir(parents=True, exist_ok=True)  # the per-case metrics behind the record's means and intervals
    shutil.copyfile(run / "eval" / "test_cases.csv", predictions / f"segment-{name}-cases.csv")
    rec = {"dataset": name, "dice_mean": round(rep["dice_mean"], 4), "dice_mean_ci95": _r(rep.get("dice_mean_ci95")),
           "nsd_mean": round(rep["nsd_mean"], 4) if "nsd_mean" in rep else None,
           "nsd_mean_ci95": _r(rep.get("nsd_mean_ci95")), "per_case": f"segment-{name}-cases.csv",
           "per_label": {k: {m: (round(v[m], 4) if not m.endswith("_ci95") else _r(v[m])) for m in PER_LABEL if m in v}
                         for k, v in rep["per_label"].items()},
           "f1": None, "auc": None, "acc": None, "n_test": rep["n"], "postprocess": rep["postprocess"],
           "train_minutes": round(info["train_seconds"] / 60, 2), "best_val_dice": info.get("best_val_score"),
           "infer_s_per_case": round(rep["infer_s_per_case"], 3),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "epochs": sum(member_epochs) if member_epochs else plan.epochs, "ensemble": plan.ensemble,
           "member_epochs": member_epochs or None, "patch": plan.segment.patch_size, "batch": plan.batch_size,
           "model": plan.model.name, "model_kwargs": plan.model.kwargs, "tta_flips": plan.mirror_tta,
           "tta_shift": plan.segment.tta_shift, "cross_validation": plan.segment.split.get("fold") == "cv",
           "precision": info.get("precision"), "time_budget": info.get("time_budget"), "reference": REFERENCE[name]}
    if "fov" in rep:
        rec.update({k: round(rep["fov"][k], 4) for k in ("f1", "auc", "aupr", "acc", "sensitivity", "specificity")})
        rec["aupr_per_image_ci95"] = rep["fov"]["aupr_per_image_ci95"]
    return rec


PER_LABEL = ("dice", "dice_ci95", "nsd", "nsd_ci95", "nsd_tolerance_mm", "iou", "hd95_mm", "hd95_mm_ci95", "assd_mm",
             "size_correlation", "size_abs_error_pct")


def _r(ci: list[float] | None) -> list[float] | None:
    return [round(v, 4) for v in ci] if ci else None


def table(records: list[dict]) -> str:
    ci = lambda v, k: f" [{v[k][0]:.3f}, {v[k][1]:.3f}]" if v.get(k) else ""
    lines = ["| dataset | Dice (mean over labels) [95 % CI] | per label: Dice, NSD (τ) | F1 / AUC / ACC in FOV | reference | "
             "train min | infer s/case | peak RAM MB (training + test, one process) | network, patch, epochs | commit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        per = "; ".join(f"{k} {v['dice']:.3f}{ci(v, 'dice_ci95')}" +
                        (f", NSD {v['nsd']:.3f} ({v['nsd_tolerance_mm']:g} mm)" if "nsd" in v else "")
                        for k, v in r["per_label"].items())
        fov = f"{r['f1']:.3f} / {r['auc']:.3f} / {r['acc']:.3f}" if r.get("f1") is not None else "–"
        ep = f"{r['epochs']} ep" if not r.get("member_epochs") else \
            f"{len(r['member_epochs'])} {'folds' if r.get('cross_validation') else 'members'} × " \
            f"{'/'.join(map(str, r['member_epochs']))} ep"
        net = f"{r['model']} {r['model_kwargs'].get('filters')}, {'×'.join(map(str, r['patch']))}, {ep}"
        if r.get("tta_shift"):
            net += f", shifted views ±{r['tta_shift']} vox"
        lines.append(f"| {r['dataset']} ({r['n_test']} test cases) | {r['dice_mean']:.3f}{ci(r, 'dice_mean_ci95')} | {per} | {fov} | {r['reference']} | "
                     f"{r['train_minutes']:.1f} | {r['infer_s_per_case']:.2f} | {r['peak_rss_mb']:.0f} | {net} | "
                     f"`{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    lines += ["", "Command(s): " + "; ".join(f"`{c}`" for c in cmds) + ". [95 % CI]: bootstrap over the test "
              "cases (2,000 resamples), where the record has them; NSD: normalised surface Dice at tolerance τ."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    common.add_common_args(ap, "segment")
    args = ap.parse_args()

    meta = common.run_meta("bench/segment.py", args.sets)
    merged = []
    for name in args.datasets:
        rec = {**run_one(name, args.out, args.sets, args.results.parent / "predictions"), **meta}
        print(json.dumps(rec), flush=True)
        merged = common.update_results(args.results, [rec], list(DATASETS))
    common.update_readme(args.readme, START, END, table(merged))
    print(table(merged))


if __name__ == "__main__":
    main()
