"""The applications benchmark's folds and folders (on the real mirror files) and its LGG summary."""
import csv
import importlib.util
import sys
from pathlib import Path

from conftest import require
from medcnn.data.segmentation import load_segmentation

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
_spec = importlib.util.spec_from_file_location("bench_applications", BENCH / "applications.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_patient_folds_partition_every_patient_once():
    ids = [f"p{i:03d}" for i in range(110)]
    folds = bench.patient_folds(ids)
    assert sorted(sum(folds, [])) == ids and [len(f) for f in folds] == [22] * 5
    assert bench.patient_folds(ids) == folds  # seeded


def test_lgg_fold_folders_hold_out_the_fold_and_flair_only_keeps_flair(lgg_dir, tmp_path):
    from medcnn.data.segmentation import load_segmentation

    ids = [c.id for c in load_segmentation(lgg_dir).cases]
    test = bench.patient_folds(ids)[0]
    full = load_segmentation(bench.fold_folder(lgg_dir, tmp_path / "all", test, "3d"))
    assert len(full.cases) == 88 and sorted(c.id for c in full.test_cases) == test
    assert all(len(c.images) == 3 for c in full.cases + full.test_cases)
    flair = load_segmentation(bench.fold_folder(lgg_dir, tmp_path / "flair", test, "flair-only"))
    assert flair.channel_names == ["FLAIR"] and len(flair.cases[0].images) == 1
    assert flair.cases[0].images[0].resolve().name.endswith("_0001.nii.gz")


def test_lgg_summary_counts_patients_and_the_flair_copies():
    label = "FLAIR abnormality"
    rows = [{"case": f"p{i}", f"{label}_dice": str(d), f"{label}_nsd": str(d + 0.1), f"{label}_nsd_tolerance_mm": "1.0",
             f"{label}_ref_size": str(100 + i), f"{label}_pred_size": str(90 + 2 * i),
             f"{label}_fp_mm2_empty_slices": "2.0", f"{label}_empty_slices_with_fp": "0.25"}
            for i, d in enumerate([0.8, 0.9, 0.7, 0.6])]
    folds = [{"split": "test", "rows": rows[:2], "val_dice": 0.8, "train_minutes": 10.0, "epochs": 5,
              "infer_s_per_case": 1.0, "peak_rss_mb": 900.0},
             {"split": "test", "rows": rows[2:], "val_dice": 0.7, "train_minutes": 12.0, "epochs": 6,
              "infer_s_per_case": 2.0, "peak_rss_mb": 1000.0}]
    r = bench.lgg_record("3d", folds, {"p3"}, {"commit": "abc"})
    assert r["n"] == 4 and r["dice_mean"] == 0.75 and r["dice_flair_copies"] == 0.6 and r["dice_others"] == 0.8
    assert r["dice_mean_ci95"][0] <= 0.75 <= r["dice_mean_ci95"][1] and r["val_dice_mean"] == 0.75
    assert r["burden_correlation"] == 1.0 and r["empty_slices_with_fp"] == 0.25 and r["peak_rss_mb"] == 1000.0
    assert r["nsd_mean"] == 0.85 and r["nsd_tolerance"] == "1.0 voxel (spacing unknown)"
    assert "Dice per patient 0.750" in bench.table([r]) and "NSD 0.850" in bench.table([r])


def test_lgg_screens_every_variant_then_runs_validations_choice_on_every_fold(lgg_dir, monkeypatch):
    import argparse

    label = "FLAIR abnormality"
    val = {"3d": 0.70, "slices": 0.75, "flair-only": 0.80}  # flair-only is no candidate, however well it validates
    calls = []

    def fold(variant, k, test_ids, out, sets, split, meta):
        calls.append((variant, k))
        rows = [{"case": c, f"{label}_dice": str(val[variant] + 0.01 * (i % 3)), f"{label}_nsd": "0.9",
                 f"{label}_nsd_tolerance_mm": "1.0", f"{label}_ref_size": str(100 + i),
                 f"{label}_pred_size": str(95 + i)} for i, c in enumerate(test_ids)]
        return {"variant": variant, "fold": k, "split": split, "n": len(rows), "rows": rows, "val_dice": val[variant],
                "train_minutes": 30.0, "epochs": 9, "infer_s_per_case": 1.0, "peak_rss_mb": 900.0}

    monkeypatch.setattr(bench, "lgg_fold", fold)
    monkeypatch.setattr(bench, "keep_cases", lambda name, folds: None)  # not into bench/results/predictions
    monkeypatch.setattr(bench, "flair_copies", lambda src: set())
    monkeypatch.setattr(bench, "data_root", lambda: lgg_dir.parent)
    args = argparse.Namespace(variants=None, folds=list(range(5)), out=None, sets=[], split="test")
    records = {r["variant"]: r for r in bench.run_lgg(args, {"commit": "abc"})}
    assert sorted(set(calls)) == sorted({("slices", k) for k in range(5)} | {(v, k) for v in val for k in (0, 1)})
    chosen, three_d = records["slices"], records["3d"]
    assert chosen["n"] == 110 and chosen["role"] == "chosen on validation" and chosen["val_dice_screen"] == \
        {"3d": 0.70, "slices": 0.75}
    assert three_d["n"] == 44 and three_d["paired_vs"] == "slices" and three_d["minus_chosen"] == -0.05
    assert records["flair-only"]["minus_chosen"] == 0.05 and "vs slices on the same 44 patients" in bench.table([three_d])
    # one fold of the choice alone (a unit of a longer campaign): no record yet
    calls.clear()
    args = argparse.Namespace(variants=["chosen"], folds=[2], out=None, sets=[], split="test")
    assert bench.run_lgg(args, {"commit": "abc"}) == [] and calls[-1] == ("slices", 2)


def test_isic_training_csv_keeps_a_stratified_tenth_for_validation(data_root, tmp_path):
    src = require(data_root / "isic2017_melanoma")
    path = bench.isic_training_csv(src, tmp_path / "train.csv")
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2000 and all(Path(r["path"]).is_file() for r in rows[:20])
    val = [r for r in rows if r["split"] == "val"]
    assert len(val) == 200 and sum(float(r["melanoma"]) for r in val) == round(374 / 10)


def test_idrid_folds_test_every_image_once(data_root, tmp_path):
    src = require(data_root / "idrid_hard_exudates")
    ids = sorted(p.stem for p in (src / "images").glob("*.jpg"))
    folds = bench.patient_folds(ids, bench.IDRID_FOLDS)
    assert sorted(sum(folds, [])) == ids and [len(f) for f in folds] == [5] * 4
    root = bench.idrid_folder(src, tmp_path / "f0", folds[0])
    assert sorted(p.stem for p in (root / "test" / "images").iterdir()) == folds[0]
    assert len(list((root / "training" / "masks").iterdir())) == 15
    assert load_segmentation(root).labels == {0: "background", 1: "hard exudate"}
    assert set(bench.REFERENCE) == set(bench.APPS)  # every application names what it compares with


def test_idrid_variants_are_chosen_on_validation_aupr(data_root, monkeypatch):
    import argparse

    require(data_root / "idrid_hard_exudates")
    val = {"default": 0.60, "foreground": 0.66, "imagenet": 0.63}
    calls = []

    def fold(variant, k, test_ids, out, sets, split, meta):
        calls.append((variant, k))
        rows = [{"case": c, "aupr": str(val[variant] + 0.01 * i), "hard exudate_dice": "0.5", "hard exudate_nsd": "0.7",
                 "hard exudate_nsd_tolerance_mm": "1.0"} for i, c in enumerate(test_ids)]
        return {"variant": variant, "fold": k, "split": split, "n": len(rows), "rows": rows, "pos": [0, 1, 3],
                "neg": [5, 1, 0], "val_dice": 0.5, "val_aupr": val[variant], "threshold": 0.5, "train_minutes": 30.0,
                "epochs": 4, "predict_seconds": 40.0, "predict_peak_mb": 1200.0}

    monkeypatch.setattr(bench, "idrid_fold", fold)
    monkeypatch.setattr(bench, "keep_cases", lambda name, folds: None)
    args = argparse.Namespace(variants=None, folds=list(range(5)), out=None, sets=[], split="test")
    records = {r["variant"]: r for r in bench.run_idrid(args, {"commit": "abc"})}
    assert sorted(set(calls)) == sorted({("foreground", k) for k in range(4)} | {(v, k) for v in val for k in (0, 1)})
    assert records["foreground"]["n"] == 20 and records["foreground"]["role"] == "chosen on validation"
    assert records["default"]["n"] == 10 and records["default"]["minus_chosen"] == -0.06
    assert "vs foreground on the same 10 photographs" in bench.table([records["default"]])
