"""Segmentation end to end on real data: plan, train, evaluate, predict (NIfTI, DICOM SEG), compare."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import require
from medcnn.cli.main import main
from medcnn.data.segmentation import load_segmentation
from medcnn.planning.segment import default_plan, fingerprint, mirror_axes_for
from medcnn.tasks import load_model


def test_plans_follow_the_data(hippocampus_dir, drive_dir):
    hippo = default_plan(load_segmentation(hippocampus_dir), str(hippocampus_dir))
    assert hippo.task == "segment" and hippo.spatial_dims == 3 and hippo.num_classes == 3
    assert hippo.segment.target_spacing == [1.0, 1.0, 1.0] and hippo.preprocessing.normalization == "zscore"
    assert hippo.segment.patch_size == [40, 56, 40]  # the median case (35x51x35) rounded to the U-Net's stride
    drive = default_plan(load_segmentation(drive_dir), str(drive_dir))
    assert drive.spatial_dims == 2 and drive.segment.use_fov and drive.preprocessing.normalization == "rgb"
    assert drive.segment.split["test_fraction"] == 0.0  # DRIVE brings its own test set
    # validation: 20 % of DRIVE's 20 training images, 21 of hippocampus' 208 non-test cases
    assert drive.segment.split["val_fraction"] == 0.2
    assert round(208 * hippo.segment.split["val_fraction"]) == 21


def test_volumes_of_unknown_voxel_size_are_planned_slice_by_slice(data_root, hippocampus_dir, tmp_path):
    """LGG's NIfTI files give no unit and 1 x 1 x 1 voxels (converted slice stacks): the U-Net runs
    slice by slice, on one-slice patches of the 3D plan's in-plane size; the same files with their
    unit in mm, and hippocampus (1 mm, said so), keep the 3D U-Net."""
    from medcnn.io import read_image
    from medcnn.io.nifti import write_nifti

    lgg = data_root / "lgg_mri_segmentation_112"
    plan = default_plan(load_segmentation(lgg), str(lgg))
    assert plan.fingerprint["spacing_known"] is False and plan.spatial_dims == 3
    assert plan.segment.patch_size == [96, 96, 1] == plan.preprocessing.input_size and plan.batch_size == 32
    assert plan.model.kwargs["kernel_size"] == [3, 3, 1]
    assert plan.model.kwargs["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 1]]
    assert default_plan(load_segmentation(hippocampus_dir), str(hippocampus_dir)).fingerprint["spacing_known"]

    said = tmp_path / "lgg-mm"  # three patients, written again with their unit said to be mm
    for sub in ("imagesTr", "labelsTr"):
        (said / sub).mkdir(parents=True)
        for f in sorted((lgg / sub).glob("*.nii.gz"))[: 9 if sub == "imagesTr" else 3]:
            img = read_image(f)
            assert img.length_unit is None  # and written as read, it would stay without one
            img.meta["spatial_unit"] = "mm"
            write_nifti(img, said / sub / f.name)
    (said / "dataset.json").write_text((lgg / "dataset.json").read_text())
    mm = default_plan(load_segmentation(said), str(said))
    assert mm.fingerprint["spacing_known"] and mm.segment.patch_size[2] > 1 and "kernel_size" not in mm.model.kwargs


def test_test_time_views_fit_the_inference_budget():
    """Mirrored views while the median case fits INFER_VOXELS; a full-resolution fundus photograph
    (726 windows of 256² per view) drops them, a larger image also halves the overlap."""
    from medcnn.planning.segment import INFER_VOXELS, inference_for, windows

    assert windows([2848, 4288], [256, 256], 0.5) == 22 * 33 and windows([35, 51, 35], [40, 56, 40], 0.5) == 1
    assert inference_for([584, 565], [256, 256], [0, 1]) == (True, 0.5)  # DRIVE: 16 windows x 4 views
    assert inference_for([112, 112, 35], [96, 96, 40], [0, 1, 2]) == (True, 0.5)  # LGG: 4 windows x 8 views
    assert inference_for([2848, 4288], [256, 256], [0, 1]) == (False, 0.5)  # IDRiD
    assert inference_for([2848, 4288], [256, 256], []) == (False, 0.5)
    big = [6000, 6000]
    assert windows(big, [256, 256], 0.5) * 256 ** 2 > INFER_VOXELS >= windows(big, [256, 256], 0.25) * 256 ** 2
    assert inference_for(big, [256, 256], [0, 1]) == (False, 0.25)


def test_normalisation_follows_what_the_channels_are(data_root):
    """Three MR sequences are z-scored per channel (nnU-Net's rule from channel_names), not scaled as
    a colour photograph; colour stays colour; CT is clipped and standardised."""
    from medcnn.planning.segment import normalization_for

    lgg = load_segmentation(data_root / "lgg_mri_segmentation_112")  # real: pre-contrast, FLAIR, post-contrast
    assert lgg.channel_names == ["pre-contrast", "FLAIR", "post-contrast"]
    fgi = {"mean": 0.0, "std": 1.0, "p0.5": -1.0, "p99.5": 1.0}

    def norm(channels, names=(), modality=""):
        fp = {"channels": channels, "channel_names": list(names), "modality": modality, "foreground_intensity": fgi}
        return normalization_for(fp)[0]

    assert norm(3, lgg.channel_names, lgg.modality) == "zscore"
    assert norm(3, ["R", "G", "B"]) == norm(3, [], "fundus photograph") == norm(3) == "rgb"
    assert norm(1, ["CT"], "CT") == "ct" and norm(1, ["T2"], "T2") == norm(2, ["T1", "T2"]) == "zscore"


def test_fundus_lesions_are_scored_inside_the_derived_field_of_view(data_root, tmp_path):
    """IDRiD hard exudates (real photographs and masks, shrunk 8x to keep the test short): no FOV
    masks, so each photograph's is derived; evaluation reports the pixel AUPR pooled and per image."""
    from PIL import Image as PILImage

    from medcnn.tasks import evaluate, train

    src = require(data_root / "idrid_hard_exudates")
    root = tmp_path / "idrid"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for k in range(1, 7):
        img = PILImage.open(src / "images" / f"IDRiD_{k:02d}.jpg")
        size = (img.width // 8, img.height // 8)
        img.resize(size, PILImage.BILINEAR).save(root / "images" / f"IDRiD_{k:02d}.png")
        mask = PILImage.open(src / "masks" / f"IDRiD_{k:02d}.png").convert("L").resize(size, PILImage.BOX)
        PILImage.fromarray(((np.asarray(mask) > 0) * 255).astype(np.uint8)).save(root / "masks" / f"IDRiD_{k:02d}.png")
    data = load_segmentation(root)
    assert all(c.fov_from_image and c.fov is None for c in data.cases)
    plan = default_plan(data, str(root)).override(
        ["epochs=1", "segment.patches_per_epoch=8", "max_minutes=0", "segment.tta_flips=false",
         "segment.split={test_fraction: 0.34, val_fraction: 0.25, fold: null}"])
    assert plan.segment.use_fov  # the derived field of view restricts loss and metrics
    run = train(plan, data, tmp_path / "run", progress=False)
    rep = evaluate(run, "test")
    assert rep["n"] == 2 and 0 <= rep["fov"]["aupr"] <= 1 and rep["fov"]["pixels"] < 0.8 * 2 * size[0] * size[1]
    cases = (run / "eval" / "test_cases.csv").read_text().splitlines()
    assert "aupr" in cases[0].split(",") and len(cases) == 3
    chosen = json.loads((run / "postprocess.json").read_text())  # the threshold, chosen on validation only
    by_t = {float(t): v for t, v in chosen["val_dice_by_threshold"].items()}
    assert chosen["threshold"] in by_t and by_t[chosen["threshold"]] >= by_t[0.5]
    assert load_model(run).threshold == chosen["threshold"]  # predict uses it


def test_a_threshold_of_one_half_is_the_argmax():
    from medcnn.infer.segmenter import to_label

    p1 = torch.rand(1, 7, 9)
    probs = torch.cat([1 - p1, p1])
    assert np.array_equal(to_label(probs, 0.5), probs.argmax(0).numpy())
    assert np.array_equal(to_label(probs, 0.2), (p1[0] > 0.2).numpy().astype(np.uint8))


def test_mirrored_views_only_where_training_mirrored(hippocampus_dir, drive_dir):
    """Mirrored test-time views of a network trained without mirroring are mislabelled (anterior <->
    posterior: test Dice .84 -> .51 in the bench-transfer ablation); inference leaves them out, and
    the planner mirrors no axis along which the label classes keep a fixed order."""
    hippo = load_segmentation(hippocampus_dir)
    fp = fingerprint(hippo)
    # anterior lies before posterior along the 2nd and 3rd array axes in every case read
    assert fp["label_order"]["share"][1:] == [1.0, 1.0] and min(fp["label_order"]["cases"]) >= 50
    plan = default_plan(hippo, str(hippocampus_dir))
    assert plan.segment.mirror_axes == mirror_axes_for(fp) and 1 not in plan.mirror_axes and 2 not in plan.mirror_axes
    assert plan.mirror_tta == plan.mirror_axes and plan.augment.flip == bool(plan.mirror_axes)
    drive = default_plan(load_segmentation(drive_dir), str(drive_dir))  # one label class: nothing to swap
    assert drive.augment.flip and drive.segment.tta_flips and drive.mirror_tta == [0, 1]
    assert drive.override(["segment.mirror_axes=[1]"]).mirror_tta == [1]
    for off in (["augment.preset=none"], ["augment.preset=light"], ["augment.flip=false"], ["augment.p=0"]):
        assert drive.override(off).segment.tta_flips and not drive.override(off).mirror_tta, off
    assert not drive.override(["segment.tta_flips=false"]).mirror_tta
    assert drive.override(["segment.tta_flips=false"]).mirror_axes == [0, 1]  # training still mirrors


def test_train_writes_split_and_evaluate_reports_mm(hippo_run):
    split = json.loads((hippo_run / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (238, 12, 10)
    assert not set(split["test"]) & set(split["train"] + split["val"])
    assert main(["evaluate", str(hippo_run), "--split", "test"]) == 0
    r = json.loads((hippo_run / "eval" / "test_segment.json").read_text())
    assert r["n"] == 10 and set(r["per_label"]) == {"Anterior", "Posterior"}
    assert 0.0 <= r["dice_mean"] <= 1.0 and r["size_unit"] == "mm3"
    assert r["per_label"]["Anterior"]["ref_size_mean"] > 500  # hippocampus head: ~1-2 cm³ per side
    ant = r["per_label"]["Anterior"]
    assert ant["nsd_tolerance_mm"] == 1.0 and 0.0 <= ant["nsd"] <= 1.0  # one voxel of the 1 mm grid
    for key in ("dice", "nsd", "hd95_mm"):
        lo, hi = ant[f"{key}_ci95"]
        assert lo <= ant[key] <= hi
    assert r["dice_mean_ci95"][0] <= r["dice_mean"] <= r["dice_mean_ci95"][1]
    from medcnn.infer.segmenter import POSTPROCESS

    post = json.loads((hippo_run / "postprocess.json").read_text())
    assert post["postprocess"] in POSTPROCESS and set(post["val_dice"]) == set(POSTPROCESS)
    assert post["val_dice"][post["postprocess"]] == max(post["val_dice"].values())
    for f in ("test_cases.csv", "test_volumes.png"):
        assert (hippo_run / "eval" / f).is_file()


def test_chosen_cases_score_as_they_do_in_the_whole_split(hippo_run, breast_run, capsys):
    """`evaluate --case`: only those cases, each scored as in the whole split, reported beside it;
    a case outside the split and a classification run are one-line errors."""
    import csv

    from medcnn.tasks import evaluate

    evaluate(hippo_run, "test")
    rows = {r["case"]: r for r in csv.DictReader(open(hippo_run / "eval" / "test_cases.csv"))}
    chosen = sorted(rows)[:2]
    assert main(["evaluate", str(hippo_run), "--case", chosen[1], "--case", chosen[0]]) == 0
    sub = json.loads((hippo_run / "eval" / "test-subset_segment.json").read_text())
    assert sub["n"] == 2 and sorted(sub["cases"]) == chosen
    for r in csv.DictReader(open(hippo_run / "eval" / "test-subset_cases.csv")):
        assert r["Anterior_dice"] == rows[r["case"]]["Anterior_dice"], r["case"]
    capsys.readouterr()
    assert main(["evaluate", str(hippo_run), "--case", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "['nobody'] are not in the run's 'test' split" in err and "Traceback" not in err
    assert main(["evaluate", str(breast_run), "--case", "x"]) == 2
    assert "--case does not apply to a classify run" in capsys.readouterr().err


def test_validation_decides_whether_mirrored_views_pay(hippo_run, tmp_path):
    """Mirrored test-time views cost 2-8x the time: kept only when they beat one view on validation."""
    import shutil

    from medcnn.runs import RunFolder
    from medcnn.tasks.segment.evaluate import CaseSegmenters, choose_postprocess, load_run_data

    run = tmp_path / "run"
    shutil.copytree(hippo_run, run)
    (run / "postprocess.json").unlink(missing_ok=True)
    seg = load_model(run)
    seg.plan = seg.plan.override(["segment.tta_flips=true", "segment.mirror_axes=[0]", "augment.flip=true"])
    assert seg.plan.mirror_tta == [0] and RunFolder(run).mirror_views()  # before a choice: the plan's views
    _, data, splits = load_run_data(run)
    choice = choose_postprocess(CaseSegmenters(run, seg, splits, "val"), data, splits["val"], run)
    assert choice["mirror_views"] == (choice["val_dice_mirrored_views"] > choice["val_dice_one_view"])
    assert RunFolder(run).mirror_views() == seg.mirror == choice["mirror_views"]
    assert choice["val_dice"][choice["postprocess"]] == max(choice["val_dice_mirrored_views"], choice["val_dice_one_view"])


def test_empty_masks_follow_the_stated_rule():
    from medcnn.tasks.segment.evaluate import surface_metrics

    ref = np.zeros((20, 20, 10), np.uint8)
    ref[5:10, 5:10, 3:6] = 1
    miss = surface_metrics(np.zeros_like(ref), ref, [1], (1.0, 1.0, 2.0))[1]
    assert miss["dice"] == miss["nsd"] == 0 and miss["hd95_mm"] == pytest.approx(np.sqrt(20**2 + 20**2 + 20**2))
    none = surface_metrics(np.zeros_like(ref), np.zeros_like(ref), [1], (1.0, 1.0, 2.0))[1]
    assert none["dice"] == none["nsd"] == 1 and np.isnan(none["hd95_mm"]) and none["nsd_tolerance_mm"] == 2.0
    shifted = np.roll(ref, 2, axis=0)
    near = surface_metrics(shifted, ref, [1], (1.0, 1.0, 1.0), tolerances_mm={1: 2.0})[1]
    far = surface_metrics(shifted, ref, [1], (1.0, 1.0, 1.0), tolerances_mm={1: 1.0})[1]
    assert near["nsd"] == 1.0 and far["nsd"] < 1.0


def test_predict_nifti_keeps_the_input_grid(hippo_run, hippocampus_dir, tmp_path):
    src = hippocampus_dir / "imagesTs" / "hippocampus_002.nii.gz"
    assert main(["predict", str(hippo_run), str(src), "--out", str(tmp_path)]) == 0
    mask = nib.load(str(tmp_path / "hippocampus_002" / "mask.nii.gz"))
    ref = nib.load(str(src))
    assert mask.shape == ref.shape and np.allclose(mask.affine, ref.affine)
    m = json.loads((tmp_path / "hippocampus_002" / "measurements.json").read_text())
    data = np.asarray(mask.dataobj)
    vox = abs(np.linalg.det(ref.affine[:3, :3]))
    for lab in m["labels"]:
        assert lab["size_mm"] == pytest.approx((data == lab["label"]).sum() * vox)
    assert main(["predict", str(hippo_run), str(src), "--out", str(tmp_path)]) == 2  # no silent overwrite


def test_a_patients_three_sequence_files_are_one_input(lgg_run, tmp_path):
    """LGG: a model of three MR sequences predicts a patient given as its three channel files (any of
    them, or all) and writes one mask on the input's grid."""
    run, root = lgg_run
    data = load_segmentation(root)
    plan = load_model(run).plan
    assert plan.preprocessing.channels == 3 and plan.preprocessing.normalization == "zscore"
    files = [root / "imagesTr" / f"{data.cases[0].id}_{k:04d}.nii.gz" for k in range(3)]
    assert main(["predict", str(run), *map(str, files), "--out", str(tmp_path / "out"),
                 "--json", str(tmp_path / "p.json")]) == 0
    results = json.loads((tmp_path / "p.json").read_text())["results"]
    assert [r["file"] for r in results] == [str(files[0])]  # one input per patient
    mask = nib.load(results[0]["outputs"]["mask"])
    ref = nib.load(str(files[1]))
    assert mask.shape == ref.shape and np.allclose(mask.affine, ref.affine)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / files[1].name).symlink_to(files[1])
    assert main(["predict", str(run), str(lone / files[1].name), "--out", str(tmp_path / "out2")]) == 2  # 0000, 0002 absent


def test_predict_dicom_series_writes_a_seg_that_matches_the_nifti(hippo_run, dicom_series_dir, tmp_path):
    import highdicom as hd
    import pydicom

    from medcnn.io import read_image

    assert main(["predict", str(hippo_run), str(dicom_series_dir), "--out", str(tmp_path)]) == 0
    out = tmp_path / dicom_series_dir.name
    seg_file = out / "seg.dcm"
    ds = pydicom.dcmread(seg_file)
    src = read_image(dicom_series_dir)
    assert ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.meta["series_instance_uid"]
    seg = hd.seg.segread(seg_file)
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=src.meta["sop_instance_uids"],
                                               combine_segments=True, relabel=False,
                                               ignore_spatial_locations=True, skip_overlap_checks=True)
    mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj)
    # SEG segment numbers run 1..n over the labels present; compare the foreground layout and per-segment voxels
    assert (np.transpose(frames, (2, 1, 0)) > 0).sum() == (mask > 0).sum()
    assert np.array_equal(np.transpose(frames, (2, 1, 0)) > 0, mask > 0)


def test_compare_two_real_scans(hippo_run, hippocampus_dir, tmp_path):
    a = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    b = hippocampus_dir / "imagesTr" / "hippocampus_003.nii.gz"
    assert main(["compare", str(hippo_run), str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())["labels"]
    for r in rows:
        assert r["size_change"] == pytest.approx(r["size_after"] - r["size_before"], abs=1e-3)


def test_compare_refuses_sizes_in_two_units(hippo_run, hippocampus_dir, tmp_path, capsys):
    """The same 1-mm scan saved without its unit is measured in voxels: comparing it with a scan in
    mm³ would subtract voxels from mm³, so compare says so and stops."""
    a = hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"
    img = nib.load(str(a))
    bare = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)  # xyzt_units unknown, 1 x 1 x 1 voxels
    nib.save(bare, tmp_path / "no_unit.nii.gz")
    assert main(["compare", str(hippo_run), str(a), str(tmp_path / "no_unit.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "no_unit.nii.gz" in err and "mm3 vs voxels" in err and "Traceback" not in err


def test_bad_input_is_one_line(hippo_run, tmp_path, capsys):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really")
    assert main(["predict", str(hippo_run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "Traceback" not in err


def test_postprocessing_on_a_real_label_map(hippocampus_dir):
    """Real reference + a stray island and a hole: largest-component removes the island, fill-holes
    closes the hole, neither touches the rest."""
    from medcnn.infer.segmenter import postprocess

    ref = np.asarray(nib.load(str(hippocampus_dir / "labelsTr" / "hippocampus_001.nii.gz")).dataobj).astype(np.uint8)
    noisy = ref.copy()
    noisy[0:2, 0:2, 0:2] = 1  # an island far from the structure
    zz = np.argwhere(ref == 2)
    c = tuple(np.round(zz.mean(0)).astype(int))
    assert ref[c] == 2
    noisy[c] = 0  # a one-voxel hole inside the posterior hippocampus
    assert np.array_equal(postprocess(noisy, "largest_component", 3)[0:2, 0:2, 0:2], np.zeros((2, 2, 2)))
    assert postprocess(noisy, "fill_holes", 3)[c] == 2
    both = postprocess(noisy, "largest_component+fill_holes", 3)
    assert (both != ref).sum() <= (noisy != ref).sum() - 9


def test_the_run_plan_decides_the_test_time_views(hippo_run, hippocampus_dir, tmp_path):
    """Editing RUN/plan.yaml's inference settings changes how the run predicts (the checkpoint's plan
    holds what training used); settings that would change the network are not taken from it."""
    import shutil

    from medcnn.errors import ConfigError
    from medcnn.io import read_image
    from medcnn.plan import Plan

    run = tmp_path / "hippo"
    shutil.copytree(hippo_run, run, ignore=shutil.ignore_patterns("eval", "predictions", "export"))
    image = read_image(sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0])
    before = load_model(run)
    plan = Plan.load(run / "plan.yaml")
    plan.override(["segment.tta_shift=2", "segment.sw_overlap=0.5", "model.kwargs.filters=[8, 16, 32, 64]"]).save(run / "plan.yaml")
    after = load_model(run)
    assert (after.plan.segment.tta_shift, after.plan.segment.sw_overlap) == (2, 0.5)
    assert after.plan.model.kwargs == before.plan.model.kwargs  # the network comes from the checkpoint
    assert not torch.allclose(before.probabilities(image), after.probabilities(image), atol=1e-3)
    bad = (run / "plan.yaml").read_text().replace("tta_shift: 2", "tta_shift: 500")
    (run / "plan.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="tta_shift"):
        load_model(run)


def test_false_alarms_on_slices_without_reference():
    from medcnn.tasks.segment.evaluate import empty_slice_false_positives

    ref = np.zeros((10, 10, 4), np.uint8)
    ref[2:5, 2:5, 1] = 1  # tumour on slice 1 only
    pred = ref.copy()
    pred[0, 0, 2] = 1  # one false voxel on slice 2 of the three empty ones
    fp = empty_slice_false_positives(pred, ref, 1, (0.5, 0.5, 3.0))
    assert fp["fp_mm2_empty_slices"] == pytest.approx(0.25 / 3) and fp["empty_slices_with_fp"] == pytest.approx(1 / 3)
    assert np.isnan(empty_slice_false_positives(pred, np.ones_like(ref), 1, (1, 1, 1))["fp_mm2_empty_slices"])


def test_average_precision_from_histograms_matches_the_exact_value():
    from sklearn.metrics import average_precision_score

    from medcnn.tasks.segment.evaluate import average_precision_from_histograms, score_histograms

    rng = np.random.default_rng(0)
    truth = rng.random(200_000) < 0.02  # rare lesions
    scores = np.clip(rng.normal(0.2 + 0.5 * truth, 0.2), 0, 1)
    h = score_histograms(scores, truth)
    assert average_precision_from_histograms(h["pos"], h["neg"]) == pytest.approx(
        average_precision_score(truth, scores), abs=2e-3)
    halves = [score_histograms(scores[i::2], truth[i::2]) for i in range(2)]  # pooled over two runs
    assert average_precision_from_histograms(sum(x["pos"] for x in halves), sum(x["neg"] for x in halves)) == \
        pytest.approx(average_precision_from_histograms(h["pos"], h["neg"]))
