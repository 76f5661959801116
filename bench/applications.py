"""The brief's applications on real data (issue #37): one record per application and variant in
bench/results/applications.json, and the README table between the bench-apps markers.

- ``lgg``: brain-tumour (FLAIR abnormality) segmentation, TCGA-LGG, 110 patients with three MR
  sequences ($MEDCNN_DATA/lgg_mri_segmentation_112). 5-fold cross-validation by patient; inside a
  fold the default plan chooses its validation patients and checkpoint. Variants: ``3d`` (the 3D
  U-Net of the default plan), ``slices`` (the same U-Net with in-plane kernels on one-slice patches, as
  nnU-Net's 2D configuration; for slices of unknown thickness), ``flair-only`` (the FLAIR channel
  alone, with the planner's choice of the two: LGG_SLICE_WISE; the records of 37a147b, before the
  planner chose slices for volumes of unknown voxel size, have it in 3D). Every
  variant runs folds 0 and 1 (SCREEN_FOLDS, 44 patients); the architecture (3d or slices) with the
  better mean validation Dice there runs all five folds, so that every patient is tested once, by
  the model of the fold that did not train on it; the other variants are ablations on the 44
  patients of the screening folds, each compared with the chosen one on the same patients (paired).
  Reported per patient: Dice (mean, 95 % interval), tumour burden predicted vs reference (voxels;
  the release gives no spacing) and their correlation, false-positive area on the slices without
  tumour, the 10 patients whose missing sequences were replaced by FLAIR.

- ``isic2017``: melanoma vs the rest, ISIC 2017 part 3 ($MEDCNN_DATA/isic2017_melanoma, 128 px):
  trained on the 2,000 training images (a seeded, stratified tenth of them validates), tested once
  on the official 150-image validation set (its labels are the only ones the mirror has; the
  official 600-image test set has none). 30 minutes of training. Variants: ``scratch`` (the
  default plan), ``imagenet`` (SqueezeNet 1.1 from ImageNet weights, input x2, a tenth of the rate on
  the pretrained layers: SQUEEZENET_SIZE), ``ssl`` (the default network from ``medcnn pretrain`` on
  the 2,000 training and 600 unlabelled test photographs, no labels used), ``squeezenet-scratch``
  (SqueezeNet at the same size from random weights: what the ImageNet weights add).

- ``idrid-ex``: hard-exudate segmentation, 20 IDRiD fundus photographs at 4288 x 2848
  ($MEDCNN_DATA/idrid_hard_exudates). 4-fold cross-validation over the images (every image tested
  once; not the challenge's split, which has 54 training and 27 test images). The field of view is
  derived from each photograph; pixel AUPR inside it, pooled over all 20 test images (from the
  folds' score histograms) and per image; Dice at the probability threshold chosen on validation;
  prediction time and peak memory of ``medcnn predict`` on one full-resolution image. 30 minutes of
  training (IDRID_MINUTES, the issue's budget). Variants: ``default`` (the default plan),
  ``foreground`` (two thirds of the patches centred on exudate, against the plan's third),
  ``imagenet`` (the U-Net on SqueezeNet 1.1's ImageNet encoder, a tenth of the rate on it). As for
  LGG, every variant runs the screening folds; the one with the best pooled validation AUPR there
  (each fold's three validation photographs, at full resolution) runs the other folds.

- ``breastmnist-10pct``: BreastMNIST with 10 % of the training and validation labels, 3 seeds, from
  scratch / ImageNet SqueezeNet / the medcnn-pretrained backbone: the label-efficiency rows of
  `bench/transfer.py` (run it first; its records and run folders are read, nothing is retrained),
  with the prediction time and memory of one of its runs measured here.

Choices are made on validation data only: which LGG variant the README calls medcnn's is the
architecture with the best mean validation Dice over the screening folds (each fold's best
checkpoint), and IDRiD's the variant with the best mean validation AUPR there, written down before
the test numbers are read; the other variants are ablations.

    python bench/applications.py --apps lgg                       # the screening folds, then the chosen one's others (hours)
    python bench/applications.py --apps lgg --variants chosen --folds 2   # one fold of validation's choice
    python bench/applications.py --apps lgg --variants 3d --folds 0 --split val --set epochs=1   # smoke: no test read

Each finished fold is saved as OUT/<app>/<variant>/fold<k>.json and reused while the code is
unchanged, and a fold whose training was cut off continues from its last checkpoint (with the epochs
its time budget chose: common.train_resumable); per-patient rows are kept in bench/results/predictions/apps-<app>-<variant>-cases.csv.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "bench/applications.py"
START, END = "<!-- bench-apps:start -->", "<!-- bench-apps:end -->"
APPS = ("lgg", "isic2017", "idrid-ex", "breastmnist-10pct")
LGG = "lgg_mri_segmentation_112"
LGG_VARIANTS = ("3d", "slices", "flair-only")
LGG_ARCHITECTURES = ("3d", "slices")  # the candidates for medcnn's row; flair-only is an ablation of the inputs
FOLDS = 5
SCREEN_FOLDS = (0, 1)  # every LGG variant runs these; the chosen architecture then runs the others
REFERENCE = {"lgg": "Buda et al. 2019: mean Dice 82 % per patient (U-Net on 256² slices, 22-fold CV)",
             "isic2017": "ISIC 2017 best melanoma AUC 0.874 (600 official test images, full resolution, ImageNet CNNs)",
             "idrid-ex": "IDRiD challenge best hard-exudate AUPR ≈ 0.89 (54 training images, 27 test)",
             "breastmnist-10pct": "goal: test AUC ≥ 0.880 (95 % of the full-label 0.926)"}
TRANSFER_KINDS = {"scratch": "scratch", "imagenet": "imagenet", "pretrained": "ssl"}
ISIC = "isic2017_melanoma"
SQUEEZENET_SIZE = ["model.kwargs.upsample=2"]
"""The ImageNet start sees the 128-px photographs at 256 px, with a tenth of the rate on its pretrained
layers: chosen on validation AUC (.83, one seed, against .79 at 128 px with that rate and .75 as planned,
two seeds each; at 256 px the planned rate died: bench/results/EXPERIMENTS.md, session 46)."""
ISIC_VARIANTS = {"scratch": [], "imagenet": ["transfer.pretrained=squeezenet1_1.imagenet", "transfer.backbone_lr=0.1",
                                             *SQUEEZENET_SIZE],
                 "ssl": [], "squeezenet-scratch": ["model.name=squeezenet1_1", *SQUEEZENET_SIZE]}
ISIC_MINUTES = 30
IDRID = "idrid_hard_exudates"
IDRID_FOLDS = 4
IDRID_MINUTES = 30
IDRID_VARIANTS = {"default": [], "foreground": ["segment.fg_oversample=0.67"],
                  "imagenet": ["transfer.pretrained=squeezenet1_1.imagenet", "transfer.backbone_lr=0.1"]}


def data_root() -> Path:
    import os

    root = os.environ.get("MEDCNN_DATA")
    if not root:
        sys.exit("set MEDCNN_DATA to the data folder")
    return Path(root)


# ---- LGG ---------------------------------------------------------------------------------------

def patient_folds(ids: list[str], folds: int = FOLDS, seed: int = 0) -> list[list[str]]:
    """The patients in ``folds`` seeded, equal-sized folds (each patient is one case here)."""
    order = np.random.default_rng(seed).permutation(sorted(ids))
    return [sorted(order[k::folds].tolist()) for k in range(folds)]


def fold_folder(src: Path, dest: Path, test_ids: list[str], variant: str) -> Path:
    """An nnU-Net folder of links: the other folds' patients in imagesTr/labelsTr, this fold's in
    imagesTs/labelsTs (the fixed test set); ``flair-only`` links FLAIR (channel 1) as channel 0."""
    if dest.exists():
        shutil.rmtree(dest)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (dest / sub).mkdir(parents=True)
    meta = json.loads((src / "dataset.json").read_text())
    channels = {"0": "FLAIR"} if variant == "flair-only" else meta["channel_names"]
    (dest / "dataset.json").write_text(json.dumps({**meta, "channel_names": channels}, indent=1))
    test = set(test_ids)
    for lab in sorted((src / "labelsTr").glob("*.nii.gz")):
        case = lab.name[: -len(".nii.gz")]
        part = "Ts" if case in test else "Tr"
        (dest / f"labels{part}" / lab.name).symlink_to(lab)
        if variant == "flair-only":
            (dest / f"images{part}" / f"{case}_0000.nii.gz").symlink_to(src / "imagesTr" / f"{case}_0001.nii.gz")
        else:
            for f in sorted((src / "imagesTr").glob(f"{case}_000?.nii.gz")):
                (dest / f"images{part}" / f.name).symlink_to(f)
    return dest


LGG_ONE_VIEW = ["segment.tta_flips=false"]
"""Every LGG variant predicts from one view: the issue asks for <= 2 s per patient, and the mirrored
views took 4-8x the time for +.003 (slices) and +.010 (3d) of validation Dice at 7327189
(EXPERIMENTS_segment.md, session 49)."""


LGG_SLICE_WISE = {"3d": False, "slices": True, "flair-only": None}
"""``default_plan``'s slice_wise for each variant: the 3D U-Net, the same U-Net slice by slice (one-slice
patches of the 3D plan's in-plane size, 3x3x1 kernels: ``planning.segment.in_plane``), or the
planner's choice (since session 50 slice by slice for LGG, whose voxel size is unknown)."""


def lgg_fold(variant: str, fold: int, test_ids: list[str], out: Path, sets: list[str], split: str, meta: dict) -> dict:
    from medcnn.data.segmentation import load_segmentation
    from medcnn.plan import Plan
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import evaluate

    rec_path = out / "lgg" / variant / f"fold{fold}-{split}.json"
    rec = common.load_reusable(rec_path, sets, SCRIPT)
    if rec is not None:
        return rec
    root = fold_folder(data_root() / LGG, out / "lgg" / variant / f"fold{fold}-data", test_ids, variant)
    data = load_segmentation(root)
    plan = default_plan(data, str(root), slice_wise=LGG_SLICE_WISE[variant])
    plan = plan.override([*LGG_ONE_VIEW, *sets])
    run = common.train_resumable(plan, data, out / "lgg" / variant / f"fold{fold}", sets, SCRIPT)
    info = json.loads((run / "run.json").read_text())
    rep = evaluate(run, split)
    with open(run / "eval" / f"{split}_cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the cost of `medcnn predict` on one patient's channel files, in a process of its own (this one
    # holds the training's memory)
    first = sorted((root / ("imagesTs" if split == "test" else "imagesTr")).glob("*_0000.nii.gz"))[0]
    seconds, mb = predict_cost(run, first, out / "lgg" / variant / f"fold{fold}-predict")
    rec = {"variant": variant, "fold": fold, "split": split, "n": rep["n"], "rows": rows,
           "val_dice": info.get("best_val_score"), "train_minutes": round(info["train_seconds"] / 60, 2),
           "epochs": Plan.load(run / "plan.yaml").epochs, "infer_s_per_case": rep["infer_s_per_case"],
           "predict_seconds": seconds, "peak_rss_mb": mb, "postprocess": rep["postprocess"], **meta}
    common.save_record(rec_path, rec)
    return rec


def flair_copies(src: Path) -> set[str]:
    """Patients whose pre- or post-contrast file repeats FLAIR (a missing sequence replaced)."""
    import nibabel as nib

    out = set()
    for lab in sorted((src / "labelsTr").glob("*.nii.gz")):
        case = lab.name[: -len(".nii.gz")]
        ch = [np.asarray(nib.load(str(src / "imagesTr" / f"{case}_{k:04d}.nii.gz")).dataobj) for k in range(3)]
        if np.array_equal(ch[0], ch[1]) or np.array_equal(ch[2], ch[1]):
            out.add(case)
    return out


def lgg_record(variant: str, folds: list[dict], copies: set[str], meta: dict) -> dict:
    """One record of a variant from its folds' per-patient rows."""
    from medcnn.metrics.intervals import mean_ci

    rows = [r for f in folds for r in f["rows"]]
    label = next(k[: -len("_dice")] for k in rows[0] if k.endswith("_dice"))
    dice = np.array([float(r[f"{label}_dice"]) for r in rows])
    nsd = np.array([float(r[f"{label}_nsd"]) for r in rows])
    ref = np.array([float(r[f"{label}_ref_size"]) for r in rows])
    pred = np.array([float(r[f"{label}_pred_size"]) for r in rows])
    fp = np.array([float(r.get(f"{label}_fp_mm2_empty_slices", "nan") or "nan") for r in rows])
    fp_share = np.array([float(r.get(f"{label}_empty_slices_with_fp", "nan") or "nan") for r in rows])
    in_copies = np.array([r["case"] in copies for r in rows])
    return {"dataset": "lgg", "variant": variant, "split": folds[0]["split"], "n": len(rows), "folds": len(folds),
            "dice_mean": round(float(dice.mean()), 4), "dice_mean_ci95": mean_ci(dice),
            "dice_median": round(float(np.median(dice)), 4),
            "nsd_mean": round(float(nsd.mean()), 4), "nsd_mean_ci95": mean_ci(nsd),
            "nsd_tolerance": f"{rows[0][f'{label}_nsd_tolerance_mm']} voxel (spacing unknown)",
            "burden_correlation": round(float(np.corrcoef(ref, pred)[0, 1]), 4) if len(rows) > 2 else None,
            "burden_abs_error_pct": round(float(np.mean(np.abs(pred - ref) / np.maximum(ref, 1)) * 100), 1),
            "fp_voxels_per_empty_slice": round(float(np.nanmean(fp)), 2) if np.isfinite(fp).any() else None,
            "empty_slices_with_fp": round(float(np.nanmean(fp_share)), 4) if np.isfinite(fp_share).any() else None,
            "dice_flair_copies": round(float(dice[in_copies].mean()), 4) if in_copies.any() else None,
            "n_flair_copies": int(in_copies.sum()),
            "dice_others": round(float(dice[~in_copies].mean()), 4) if (~in_copies).any() else None,
            "val_dice_mean": round(float(np.mean([f["val_dice"] for f in folds])), 4),
            "train_minutes": round(float(np.mean([f["train_minutes"] for f in folds])), 2),
            "epochs": [f["epochs"] for f in folds],
            "infer_s_per_case": round(float(np.mean([f["infer_s_per_case"] for f in folds])), 3),
            "peak_rss_mb": max(f["peak_rss_mb"] for f in folds), "reference": REFERENCE["lgg"],
            "unit_note": "spacing unknown (identity affine): sizes are voxel counts", **meta}


def staged(args, variants: tuple[str, ...], candidates: tuple[str, ...], n_folds: int, run_fold, score):
    """Fold runs of a cross-validated application in two stages. Without --variants: every variant on
    SCREEN_FOLDS, then the candidate with the best mean ``score(fold record)`` over those (validation
    only) on all ``n_folds``. With --variants (``chosen``: that candidate, whose screening runs are
    reused or made first) and --folds: those runs only. Returns (chosen or None, each candidate's
    mean score, {variant: fold records})."""
    chosen, val = None, {}
    if not args.variants or "chosen" in args.variants:
        val = {v: round(float(np.mean([score(run_fold(v, k)) for k in SCREEN_FOLDS])), 4) for v in candidates}
        chosen = max(val, key=val.get)
        print(f"mean validation score over folds {list(SCREEN_FOLDS)}: {val}; chosen: {chosen}", flush=True)
    asked = {chosen if v == "chosen" else v: [k for k in args.folds if k < n_folds] for v in args.variants} \
        if args.variants else {v: list(range(n_folds)) if v == chosen else list(SCREEN_FOLDS) for v in (chosen, *variants)}
    return chosen, val, {v: [run_fold(v, k) for k in ks] for v, ks in asked.items()}


def paired_with(runs: list[dict], chosen_runs: list[dict], chosen: str, metric: str) -> dict:
    """The per-case difference of ``metric`` (a column of the fold records' rows) of a variant to the
    chosen one, on the cases of ``runs``."""
    from medcnn.metrics.intervals import paired_difference_ci

    def values(fold_runs):
        rows = {r["case"]: r for f in fold_runs for r in f["rows"]}
        key = metric if metric in next(iter(rows.values())) else \
            next(k for k in next(iter(rows.values())) if k.endswith(metric))  # LGG: "<label>_dice"
        return {c: float(r[key]) for c, r in rows.items()}

    a, b = values(runs), values(chosen_runs)
    cases = sorted(a)
    x, y = np.array([a[c] for c in cases]), np.array([b[c] for c in cases])
    return {"paired_vs": chosen, "paired_metric": metric, "minus_chosen": round(float((x - y).mean()), 4),
            "minus_chosen_ci95": paired_difference_ci(x, y), "chosen_same_cases": round(float(y.mean()), 4)}


def run_lgg(args, meta: dict) -> list[dict]:
    """LGG's fold runs (:func:`staged`: the architectures are the candidates, flair-only an ablation)
    and a record per variant whose folds are complete."""
    from medcnn.data.segmentation import load_segmentation

    src = data_root() / LGG
    ids = [c.id for c in load_segmentation(src).cases]
    folds = patient_folds(ids)
    copies = flair_copies(src)
    chosen, val, done = staged(args, LGG_VARIANTS, LGG_ARCHITECTURES, FOLDS,
                               lambda v, k: lgg_fold(v, k, folds[k], args.out, args.sets, args.split, meta),
                               lambda f: f["val_dice"])
    records = []
    for variant, runs in done.items():
        keep_cases(f"lgg-{variant}", runs)
        for f in runs:
            print(f"lgg {variant} fold {f['fold']}: val Dice {f['val_dice']:.4f}, {f['split']} n {f['n']}, "
                  f"{f['train_minutes']:.1f} min", flush=True)
        if args.split != "test":
            continue
        if variant == chosen and len(runs) == FOLDS:
            records.append({**lgg_record(variant, runs, copies, meta), "role": "chosen on validation",
                            "val_dice_screen": val})
        elif not args.variants and chosen is not None:  # an ablation, against the choice on the same patients
            records.append({**lgg_record(variant, runs, copies, meta),
                            **paired_with(runs, done[chosen], chosen, "_dice"), "role": "ablation (screening folds)"})
        elif len(runs) == FOLDS:
            records.append(lgg_record(variant, runs, copies, meta))
    return records


def keep_cases(name: str, folds: list[dict]) -> None:
    """The per-case rows behind a record (bench/results/predictions/apps-<name>-cases.csv)."""
    rows = [{"fold": f["fold"], **r} for f in folds for r in f["rows"]]
    if not rows or folds[0]["split"] != "test":
        return
    path = ROOT / "bench" / "results" / "predictions" / f"apps-{name}-cases.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


# ---- ISIC 2017 ----------------------------------------------------------------------------------

def isic_training_csv(src: Path, dest: Path, seed: int = 0) -> Path:
    """The 2,000 training images with a seeded, stratified train / val column (no test split: the
    official validation set tests)."""
    with open(src / "ISIC-2017_Training_Classes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    val = set()
    for label in ("0.0", "1.0"):
        ids = [r["image_id"] for r in rows if r["melanoma"] == label]
        val |= set(rng.choice(ids, round(len(ids) / 10), replace=False).tolist())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "melanoma", "split"])
        for r in rows:
            w.writerow([str(src / "train" / f"{r['image_id']}.jpg"), r["melanoma"], "val" if r["image_id"] in val else "train"])
    return dest


def isic_backbone(src: Path, out: Path, size: int, sets: list[str]) -> tuple[Path, float]:
    """``medcnn pretrain`` on the training and unlabelled test photographs (made once; reused; a
    killed pretraining continues from its last checkpoint)."""
    run = out / "isic2017" / "ssl-backbone"
    rec = out / "isic2017" / "ssl-backbone.json"
    done = common.load_reusable(rec, sets, SCRIPT)
    if done is not None and (run / "plan.yaml").is_file():
        return run, done["minutes"]
    from medcnn.tasks import get_task

    ds, plan, _ = get_task("pretrain").prepare([str(src / "train"), str(src / "test_unlabelled")], size, channels=3)
    common.train_resumable(plan.override(sets), ds, run, sets, SCRIPT)
    minutes = round(json.loads((run / "run.json").read_text())["train_seconds"] / 60, 2)
    common.save_record(rec, {"minutes": minutes, **common.run_meta(SCRIPT, sets)})
    return run, minutes


def isic_run(variant: str, out: Path, sets: list[str], split: str, meta: dict) -> dict:
    import time

    from medcnn.data.classification import load_classification
    from medcnn.models import override_plan
    from medcnn.plan import Plan
    from medcnn.planning import default_plan
    from medcnn.tasks import evaluate

    rec_path = out / "isic2017" / f"{variant}-{split}.json"
    rec = common.load_reusable(rec_path, sets, SCRIPT)
    if rec is not None:
        return rec
    src = data_root() / ISIC
    train_csv = isic_training_csv(src, out / "isic2017" / "train.csv")
    data = load_classification(str(train_csv))
    plan = default_plan(data, str(train_csv))
    overrides = list(ISIC_VARIANTS[variant])
    pretrain_minutes = None
    if variant == "ssl":
        backbone, pretrain_minutes = isic_backbone(src, out, plan.preprocessing.input_size[0], sets)
        overrides.append(f"transfer.pretrained={backbone}")
    plan = override_plan(plan, [f"max_minutes={ISIC_MINUTES}", *overrides, *sets])
    run = common.train_resumable(plan, data, out / "isic2017" / variant, sets, SCRIPT)
    info = json.loads((run / "run.json").read_text())
    trained = Plan.load(run / "plan.yaml")  # as trained: a pretrained start sets the network
    t0 = time.perf_counter()
    if split == "test":  # the official validation set, whole, read once
        rep = evaluate(run, "all", data=str(src / "ISIC-2017_Validation_Classes.csv"))
    else:
        rep = evaluate(run, "val")
    infer_s = (time.perf_counter() - t0) / rep["n"]
    keep = {k: rep[k] for k in ("auc", "auc_ci95", "acc", "acc_ci95", "brier", "ece") if k in rep}
    rec = {"dataset": "isic2017", "variant": variant, "split": split, "n": rep["n"],
           **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in keep.items()},
           "sensitivity": rep.get("per_class", {}).get("melanoma", {}).get("sensitivity"),
           "specificity": rep.get("per_class", {}).get("melanoma", {}).get("specificity"),
           "model": trained.model.name, "model_kwargs": trained.model.kwargs,
           "input_size": trained.preprocessing.input_size,
           "val_auc": info.get("best_val_score"), "train_minutes": round(info["train_seconds"] / 60, 2),
           "pretrain_minutes": pretrain_minutes, "epochs": info.get("time_budget", {}).get("epochs", plan.epochs),
           "infer_s_per_case": round(infer_s, 4), "reference": REFERENCE["isic2017"], **meta}
    # memory of `medcnn predict` on one photograph, in a process of its own (this one holds the training's)
    rec["predict_seconds"], rec["peak_rss_mb"] = predict_cost(
        run, sorted((src / "validation").glob("*.jpg"))[0], out / "isic2017" / f"{variant}-predict")
    if split == "test":
        name = rep.get("eval_name", "all")
        kept = ROOT / "bench" / "results" / "predictions" / f"apps-isic2017-{variant}.npz"
        common.save_predictions(kept, np.load(run / "eval" / f"{name}_probs.npy"), load_classification(
            str(src / "ISIC-2017_Validation_Classes.csv")).split("all")[1])
        rec["predictions"] = kept.name
    common.save_record(rec_path, rec)
    return rec


def run_isic(args, meta: dict) -> list[dict]:
    records = []
    for variant in args.variants or ISIC_VARIANTS:
        if variant not in ISIC_VARIANTS:
            continue
        r = isic_run(variant, args.out, args.sets, args.split, meta)
        print(f"isic2017 {variant}: val AUC {r['val_auc']:.4f}, {r['split']} AUC {r['auc']:.4f} (n {r['n']}), "
              f"{r['train_minutes']:.1f} min", flush=True)
        if args.split == "test":
            records.append(r)
    return records


# ---- IDRiD hard exudates -------------------------------------------------------------------------

EXUDATE = "hard exudate"  # the class the masks mark, named in the folder's dataset.json and the reports


def idrid_folder(src: Path, dest: Path, test_ids: list[str]) -> Path:
    """A DRIVE-style folder of links: training/ and test/, each with images/ and masks/, and a
    dataset.json that names the masks' class."""
    if dest.exists():
        shutil.rmtree(dest)
    for part in ("training", "test"):
        for sub in ("images", "masks"):
            (dest / part / sub).mkdir(parents=True)
    (dest / "dataset.json").write_text(json.dumps({"labels": {"background": 0, EXUDATE: 1}}))
    for img in sorted((src / "images").glob("*.jpg")):
        part = "test" if img.stem in test_ids else "training"
        (dest / part / "images" / img.name).symlink_to(img)
        (dest / part / "masks" / f"{img.stem}.png").symlink_to(src / "masks" / f"{img.stem}.png")
    return dest


def predict_cost(run: Path, image: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak MB) of ``medcnn predict`` on one image, in a process of its own."""
    seconds, mb = common.medcnn_cost(["predict", str(run), str(image), "--out", str(out), "--overwrite"])
    return round(seconds, 2), mb


def idrid_fold(variant: str, fold: int, test_ids: list[str], out: Path, sets: list[str], split: str, meta: dict) -> dict:
    from medcnn.data.segmentation import load_segmentation
    from medcnn.models import override_plan
    from medcnn.plan import Plan
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import evaluate
    from medcnn.tasks.segment.evaluate import average_precision_from_histograms

    where = out / "idrid-ex" / variant
    rec_path = where / f"fold{fold}-{split}.json"
    rec = common.load_reusable(rec_path, sets, SCRIPT)
    if rec is not None:
        return rec
    root = idrid_folder(data_root() / IDRID, where / f"fold{fold}-data", test_ids)
    data = load_segmentation(root)
    plan = override_plan(default_plan(data, str(root)), [f"max_minutes={IDRID_MINUTES}", *IDRID_VARIANTS[variant], *sets])
    run = common.train_resumable(plan, data, where / f"fold{fold}", sets, SCRIPT)
    info = json.loads((run / "run.json").read_text())
    scores = {}
    for part in dict.fromkeys(("val", split)):  # validation's AUPR chooses the variant; then the split
        rep = evaluate(run, part, overlays=1 if part == split else 0)
        hist = np.load(run / "eval" / f"{part}_fov_scores.npz")
        scores[part] = (rep, hist)
    rep, hist = scores[split]
    with open(run / "eval" / f"{split}_cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = sorted((root / ("test" if split == "test" else "training") / "images").iterdir())[0]
    seconds, mb = predict_cost(run, first, where / f"fold{fold}-predict")
    chosen = json.loads((run / "postprocess.json").read_text())
    val_hist = scores["val"][1]
    rec = {"variant": variant, "fold": fold, "split": split, "n": rep["n"], "rows": rows, "pos": hist["pos"].tolist(),
           "neg": hist["neg"].tolist(), "val_dice": info.get("best_val_score"),
           "val_aupr": round(average_precision_from_histograms(val_hist["pos"], val_hist["neg"]), 4),
           "threshold": chosen.get("threshold"), "model": Plan.load(run / "plan.yaml").model.name,
           "train_minutes": round(info["train_seconds"] / 60, 2), "epochs": Plan.load(run / "plan.yaml").epochs,
           "predict_seconds": seconds, "predict_peak_mb": mb, **meta}
    common.save_record(rec_path, rec)
    return rec


def idrid_record(variant: str, folds: list[dict], meta: dict) -> dict:
    from medcnn.metrics.intervals import mean_ci
    from medcnn.tasks.segment.evaluate import average_precision_from_histograms

    rows = [r for f in folds for r in f["rows"]]
    aupr = np.array([float(r["aupr"]) for r in rows])
    dice = np.array([float(r[f"{EXUDATE}_dice"]) for r in rows])
    nsd = np.array([float(r[f"{EXUDATE}_nsd"]) for r in rows])
    pos = np.sum([np.asarray(f["pos"]) for f in folds], axis=0)
    neg = np.sum([np.asarray(f["neg"]) for f in folds], axis=0)
    return {"dataset": "idrid-ex", "variant": variant, "split": folds[0]["split"], "n": len(rows), "folds": len(folds),
            "aupr": round(average_precision_from_histograms(pos, neg), 4),
            "aupr_per_image_mean": round(float(aupr.mean()), 4), "aupr_per_image_ci95": mean_ci(aupr),
            "dice_mean": round(float(dice.mean()), 4), "dice_mean_ci95": mean_ci(dice),
            "nsd_mean": round(float(nsd.mean()), 4), "nsd_mean_ci95": mean_ci(nsd),
            "nsd_tolerance": f"{rows[0][f'{EXUDATE}_nsd_tolerance_mm']} pixel",
            "thresholds": [f["threshold"] for f in folds], "model": folds[0].get("model"),
            "val_aupr_mean": round(float(np.mean([f["val_aupr"] for f in folds])), 4),
            "train_minutes": round(float(np.mean([f["train_minutes"] for f in folds])), 2),
            "epochs": [f["epochs"] for f in folds],
            "infer_s_per_case": round(float(np.mean([f["predict_seconds"] for f in folds])), 2),
            "peak_rss_mb": max(f["predict_peak_mb"] for f in folds), "reference": REFERENCE["idrid-ex"],
            "note": "cross-validation over the 20 images of the mirror, not the challenge split", **meta}


def run_idrid(args, meta: dict) -> list[dict]:
    """IDRiD's fold runs (:func:`staged`: every variant a candidate, chosen by validation AUPR) and a
    record per variant whose folds are complete."""
    ids = sorted(p.stem for p in (data_root() / IDRID / "images").glob("*.jpg"))
    folds = patient_folds(ids, IDRID_FOLDS)
    chosen, val, done = staged(args, tuple(IDRID_VARIANTS), tuple(IDRID_VARIANTS), IDRID_FOLDS,
                               lambda v, k: idrid_fold(v, k, folds[k], args.out, args.sets, args.split, meta),
                               lambda f: f["val_aupr"])
    records = []
    for variant, runs in done.items():
        for f in runs:
            print(f"idrid-ex {variant} fold {f['fold']}: val Dice {f['val_dice']:.4f}, val AUPR {f['val_aupr']:.4f}, "
                  f"{f['split']} n {f['n']}, threshold {f['threshold']}, {f['train_minutes']:.1f} min, "
                  f"predict {f['predict_seconds']:.1f} s {f['predict_peak_mb']:.0f} MB", flush=True)
        keep_cases(f"idrid-ex-{variant}", runs)
        if args.split != "test":
            continue
        if variant == chosen and len(runs) == IDRID_FOLDS:
            records.append({**idrid_record(variant, runs, meta), "role": "chosen on validation", "val_aupr_screen": val})
        elif not args.variants and chosen is not None:
            records.append({**idrid_record(variant, runs, meta), **paired_with(runs, done[chosen], chosen, "aupr"),
                            "role": "ablation (screening folds)"})
        elif len(runs) == IDRID_FOLDS:
            records.append(idrid_record(variant, runs, meta))
    return records


# ---- BreastMNIST at 10 % of the labels (from bench/transfer.py) ---------------------------------

def run_breast10(args, meta: dict) -> list[dict]:
    from medcnn.data.classification import load_classification

    transfer = json.loads((ROOT / "bench" / "results" / "transfer.json").read_text())
    rows = [r for r in transfer if r.get("dataset") == "breastmnist" and r.get("fraction") == 0.1
            and "augment" not in r and r.get("init_kind") in TRANSFER_KINDS]
    if not rows:
        sys.exit("no BreastMNIST 10 % records in bench/results/transfer.json: run bench/transfer.py --part labels first")
    x = load_classification("breastmnist").images["test"]
    records = []
    for r in rows:
        run = args.transfer_out / "breastmnist" / f"{r['init_kind']}_f0.1_s0"
        seconds, mb = (predict_array_cost(run, x) if (run / "plan.yaml").is_file() else (None, None))
        records.append({"dataset": "breastmnist-10pct", "variant": TRANSFER_KINDS[r["init_kind"]], "split": "test",
                        "n": int(len(x)), "auc": r["mean"], "auc_std": r["std"], "auc_ci95": r.get("ci95"),
                        "seeds": r["seeds"], "n_train": r["n_train"], "train_minutes": r.get("minutes"),
                        "infer_s_per_case": seconds, "peak_rss_mb": mb, "reference": REFERENCE["breastmnist-10pct"],
                        "source_commit": r["commit"], "source_command": r["command"], **meta})
    return records


def predict_array_cost(run: Path, images: np.ndarray) -> tuple[float, float]:
    """(seconds per image, peak MB) of the run's classifier on ``images``."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".npy") as f:
        np.save(f.name, images)
        seconds, mb = common.child_cost(
            "import sys, time, numpy as np; from medcnn.tasks import load_model; x = np.load(sys.argv[2]); "
            "m = load_model(sys.argv[1]); t = time.perf_counter(); m.predict_array(x); "
            "seconds = (time.perf_counter() - t) / len(x)", str(run), f.name)
    return round(seconds, 5), mb


# ---- results --------------------------------------------------------------------------------------

def update_results(path: Path, records: list[dict]) -> list[dict]:
    old = json.loads(path.read_text()) if path.is_file() else []
    keys = {(r["dataset"], r["variant"]) for r in records}
    merged = [r for r in old if (r["dataset"], r["variant"]) not in keys] + records
    merged.sort(key=lambda r: (APPS.index(r["dataset"]) if r["dataset"] in APPS else 99, r["variant"]))
    common.save_record(path, merged)
    return merged


def _ci(r: dict, key: str) -> str:
    ci = r.get(f"{key}_ci95")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _num(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _nsd(r: dict) -> str:
    """A segmentation record's normalised surface Dice, where it has one."""
    return f"; NSD {r['nsd_mean']:.3f}{_ci(r, 'nsd_mean')} ({r['nsd_tolerance']})" if r.get("nsd_mean") is not None else ""


def _staging(r: dict, cases: str, screen_key: str) -> str:
    """A staged variant's note: an ablation's paired difference to the chosen variant, or the choice's
    validation scores."""
    if r.get("paired_vs"):
        lo, hi = r["minus_chosen_ci95"]
        return (f"; {r['minus_chosen']:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {r['paired_vs']} on the same {r['n']} "
                f"{cases} (folds {', '.join(str(k) for k in SCREEN_FOLDS)})")
    if r.get("role"):
        return f"; {r['role']} ({', '.join(f'{k} {v:.3f}' for k, v in r[screen_key].items())})"
    return ""


def table(records: list[dict]) -> str:
    lines = ["| application | variant | metric (95 % CI) | n | detail | train min | infer s/case | peak RSS MB | published | commit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["dataset"] == "lgg":
            metric = f"Dice per patient {r['dice_mean']:.3f}{_ci(r, 'dice_mean')}" + _nsd(r)
            detail = (f"burden r {r['burden_correlation']:.3f}; {100 * (r['empty_slices_with_fp'] or 0):.1f} % of "
                      f"tumour-free slices with a false positive; FLAIR-copy patients {_num(r['dice_flair_copies'], '.3f')} "
                      f"(n {r['n_flair_copies']}); val Dice {r['val_dice_mean']:.3f}")
            detail += _staging(r, "patients", "val_dice_screen")
        elif r["dataset"] == "isic2017":
            metric = f"melanoma AUC {r['auc']:.3f}{_ci(r, 'auc')}"
            up = (r.get("model_kwargs") or {}).get("upsample")
            detail = (f"{r['model']} at {r['input_size'][0]} px" + (f" (x{up:g} inside the network)" if up else "")
                      + f"; val AUC {r['val_auc']:.3f}"
                      + (f"; pretraining {r['pretrain_minutes']:.0f} min" if r.get("pretrain_minutes") else ""))
        elif r["dataset"] == "idrid-ex":
            metric = f"pixel AUPR {r['aupr']:.3f} pooled; per image {r['aupr_per_image_mean']:.3f}{_ci(r, 'aupr_per_image')}"
            detail = (f"Dice {r['dice_mean']:.3f}{_ci(r, 'dice_mean')}{_nsd(r)} at the validation threshold; {r['note']}"
                      + _staging(r, "photographs", "val_aupr_screen"))
        elif r["dataset"] == "breastmnist-10pct":
            metric = f"AUC {r['auc']:.3f}{_ci(r, 'auc')} (± {r['auc_std']:.3f} over seeds)"
            detail = f"{r['n_train']} training labels; from `{r['source_command']}` at `{r['source_commit']}`"
        else:
            continue
        lines.append(f"| {r['dataset']} | {r['variant']} | {metric} | {r['n']} | {detail} | {_num(r['train_minutes'], '.1f')} | "
                     f"{_num(r['infer_s_per_case'], '.3g')} | {_num(r['peak_rss_mb'], '.0f')} | {r['reference']} | `{r['commit']}` |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap, "applications")
    ap.add_argument("--apps", nargs="+", default=list(APPS), choices=APPS)
    ap.add_argument("--variants", nargs="+", help="only these variants (default: all of each application)")
    ap.add_argument("--folds", nargs="+", type=int, default=list(range(FOLDS)), help="which cross-validation folds run")
    ap.add_argument("--transfer-out", type=Path, default=ROOT / "runs" / "bench-transfer",
                    help="bench/transfer.py's --out (its BreastMNIST 10 %% run folders)")
    ap.add_argument("--split", default="test", choices=("test", "val"),
                    help="val: a development run that never reads the test patients (no record written)")
    args = ap.parse_args()
    meta = common.run_meta(SCRIPT, args.sets)
    records = []
    if "lgg" in args.apps:
        records += run_lgg(args, meta)
    if "isic2017" in args.apps:
        records += run_isic(args, meta)
    if "idrid-ex" in args.apps:
        records += run_idrid(args, meta)
    if "breastmnist-10pct" in args.apps:
        records += run_breast10(args, meta)
    if records:
        merged = update_results(args.results, records)
        common.update_readme(args.readme, START, END, table(merged))


if __name__ == "__main__":
    main()
