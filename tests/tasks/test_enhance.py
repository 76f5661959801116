"""Enhancement end to end on real MR volumes (MSD hippocampus imagesTs): plan, split, train."""
import json

import numpy as np
import pytest
import torch

from medcnn.cli.main import main
from medcnn.data.enhance import load_enhance, slab_split, split_sources
from medcnn.errors import InputError
from medcnn.plan import Plan
from medcnn.planning.enhance import default_plan
from medcnn.tasks import load_model

# a CT model's normalisation (plan overrides): a fixed HU window
CT_WINDOW = ["preprocessing.normalization=window", "preprocessing.normalization_args={window: [-1024, 1500]}"]


def test_plan_window_and_patch_follow_the_data(mr_dir):
    ds = load_enhance(mr_dir)
    assert len(ds.sources) == 130 and all(s.id.endswith(".nii.gz") for s in ds.sources)
    p = default_plan(ds, str(mr_dir), "rician", [0.02, 0.1])
    lo, hi = p.fingerprint["intensity"]["p0.5"], p.fingerprint["intensity"]["p99.5"]
    assert lo < hi
    # MRI: arbitrary units, each scan its own range
    assert p.preprocessing.normalization == "percentile_affine" and p.preprocessing.normalization_args == {}
    assert p.enhance.patch_size == [32, 48]  # the median slice (35 x 51) rounded down to the U-Net's stride
    assert p.enhance.level == [0.02, 0.1] and p.task == "enhance"
    assert 0 < p.optim.grad_clip < 1  # the norm-free U-Net's rare runaway steps are bounded
    again = Plan.from_dict(p.to_dict())
    assert again.enhance == p.enhance and "segment" not in p.to_dict()


def test_segmentation_labels_are_not_images_to_enhance(hippocampus_dir):
    ids = [s.id for s in load_enhance(hippocampus_dir).sources]
    assert len(ids) == 390 and not any("labelsTr" in i for i in ids)


def test_split_by_source_or_by_slab():
    ids = [f"s{i}" for i in range(50)]
    sp = split_sources(ids, seed=0)
    assert sp["by"] == "source" and not set(sp["test"]) & set(sp["train"] + sp["val"])
    assert (len(sp["train"]), len(sp["val"]), len(sp["test"])) == (35, 5, 10)
    one = split_sources(["vol"])
    assert one["by"] == "slab"
    parts = {k: list(slab_split(100, k)) for k in ("train", "val", "test")}
    assert parts["test"] == list(range(80, 100)) and parts["val"] == list(range(68, 78))
    assert max(parts["train"]) == 65  # two slices left out on each side of validation
    with pytest.raises(InputError):
        slab_split(6, "train")


def test_a_folder_of_the_data_root_is_found_by_its_bare_name(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of that name here: the data root's folder is meant
    data = load_enhance("lgg_mri_segmentation_112")
    assert data.root == data_root / "lgg_mri_segmentation_112" and len(data.sources) == 330
    (tmp_path / "lgg_mri_segmentation_112").mkdir()  # a folder of that name here wins
    with pytest.raises(InputError, match="no images found"):
        load_enhance("lgg_mri_segmentation_112")


def test_a_patients_sequences_stay_in_one_part(lgg_dir):
    """LGG's three MR sequences per patient (nnU-Net channel files) are one patient: never split."""
    from medcnn.data.enhance import source_group

    data = load_enhance(lgg_dir)
    groups = [source_group(s) for s in data.sources]
    assert len(data.sources) == 330 and len(set(groups)) == 110
    sp = split_sources([s.id for s in data.sources], groups=groups, seed=0)
    assert sp["by"] == "patient"
    part = {g: k for k in ("train", "val", "test") for i, g in zip([s.id for s in data.sources], groups) if i in sp[k]}
    assert len(part) == 110 and sum(len(sp[k]) for k in ("train", "val", "test")) == 330
    for k in ("train", "val", "test"):  # whole patients only
        assert len(sp[k]) % 3 == 0 and all(part[g] == k for i, g in zip([s.id for s in data.sources], groups) if i in sp[k])
    # the test images live elsewhere (a benchmark's own test set): nothing held out for test
    none = split_sources([f"s{i}" for i in range(50)], test_fraction=0.0, seed=0)
    assert none["test"] == [] and (len(none["train"]), len(none["val"])) == (45, 5)


def test_enhance_training_removes_noise(enhance_run):
    run = enhance_run
    split = json.loads((run / "split.json").read_text())
    assert split["by"] == "source" and not set(split["test"]) & set(split["train"])
    hist = json.loads((run / "metrics.json").read_text())["epochs"]
    assert len(hist) == 3
    # 144 optimizer steps already restore more than they lose: PSNR above the noisy input's
    assert hist[-1]["val_psnr"] > hist[-1]["val_psnr_degraded"] + 1.0
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "learning_curve.png").is_file()
    sd = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert sd["hyper_parameters"]["plan"]["enhance"]["degradation"] == "gaussian"


def test_self_ensemble_averages_the_eight_views_of_a_slice():
    """plan tta: dihedral restores each rotation / mirror of the input and averages them turned back
    (the ready MR denoiser on a real MR slice, cut to 64 x 48 so that rotated views change shape)."""
    import dataclasses

    from pydicom.data import get_testdata_file

    from medcnn.infer.enhancer import Enhancer
    from medcnn.io import read_image

    enh = load_model("mr-denoiser")
    a = read_image(get_testdata_file("MR_small.dcm")).array.astype(np.float32).reshape(1, 64, 64)[..., :48]
    x = torch.from_numpy(a / a.max())[None]
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    views = []
    for k in range(4):
        for mirrored in (False, True):
            v = torch.rot90(x, k, dims=(-2, -1))
            y = enh.restore_normalised(v.flip(-1) if mirrored else v)
            views.append(torch.rot90(y.flip(-1) if mirrored else y, -k, dims=(-2, -1)))
    out = Enhancer(dataclasses.replace(enh.plan, tta="dihedral"), enh.net).restore_normalised(x)
    assert out.shape == x.shape and torch.allclose(out, torch.stack(views).mean(0), atol=1e-5)
    assert not torch.allclose(out, views[0], atol=1e-3)  # the network alone is not rotation-invariant


def test_evaluate_beside_the_classical_baselines(enhance_run):
    from medcnn.tasks import evaluate

    r = evaluate(enhance_run, "test", limit=6)
    rows = {row["method"]: row for row in r["rows"]}
    assert set(rows) == {"noisy", "medcnn", "bm3d", "nlm", "bm3d-estimated"} and r["n_images"] == 6
    assert rows["bm3d"]["baseline_sigma"] == rows["nlm"]["baseline_sigma"] == "oracle"
    assert rows["bm3d-estimated"]["baseline_sigma"] == "estimated"  # an extra row: what a user without the truth gets
    # sigma 25/255 on [0, 1]: the noisy input is at 20 * log10(255 / 25) = 20.2 dB
    assert rows["noisy"]["psnr"] == pytest.approx(20.17, abs=0.3)
    assert rows["bm3d"]["psnr"] > rows["noisy"]["psnr"] + 3 and rows["medcnn"]["psnr"] > rows["noisy"]["psnr"]
    assert (enhance_run / "eval" / "enhance_test.csv").read_text().startswith("level,method,psnr")
    assert (r["psnr"], r["psnr_ci95"]) == (rows["medcnn"]["psnr"], rows["medcnn"]["psnr_ci95"])  # the headline
    for row in rows.values():  # intervals over the 6 images, and the per-image values behind them
        assert row["psnr_ci95"][0] <= row["psnr"] <= row["psnr_ci95"][1] and len(row["per_image_psnr"]) == 6
    best = max(("bm3d", "nlm"), key=lambda m: rows[m]["psnr"])  # the paired difference is against the best oracle
    diff = np.array(rows["medcnn"]["per_image_psnr"]) - np.array(rows[best]["per_image_psnr"])
    assert rows["medcnn"][f"psnr_minus_{best}"] == pytest.approx(diff.mean(), abs=2e-3)
    lo, hi = rows["medcnn"][f"psnr_minus_{best}_ci95"]
    assert lo <= rows["medcnn"][f"psnr_minus_{best}"] <= hi
    assert len((enhance_run / "eval" / "enhance_test_images.csv").read_text().splitlines()) == 1 + 5 * 6


def test_rician_bias_is_undone_for_the_baseline():
    """BM3D returns about the mean magnitude; the Rician mean inverted gives back the amplitude."""
    from medcnn.tasks.enhance.evaluate import oracle_sigma, rician_mean, rician_unbias

    rng = np.random.default_rng(0)
    sigma = 0.05
    for amplitude in (0.05, 0.2, 0.8):
        noise = sigma * (rng.standard_normal(100_000) + 1j * rng.standard_normal(100_000))
        magnitude = np.abs(amplitude + noise)
        assert rician_mean(np.array([amplitude]), sigma)[0] == pytest.approx(magnitude.mean(), abs=1e-3)
        assert rician_unbias(np.array([magnitude.mean()]), sigma)[0] == pytest.approx(amplitude, abs=2e-3)
    clean = rng.random((8, 8))
    assert oracle_sigma("rician", 0.07, clean, clean) == 0.07
    assert oracle_sigma("lowdose-ct", 1e4, clean + 0.1 * rng.standard_normal((8, 8)), clean) == pytest.approx(0.1, abs=0.04)


def test_restored_volume_keeps_grid_and_units(enhance_run, mr_dir):
    from medcnn.io import read_image

    img = read_image(sorted(mr_dir.glob("*.nii.gz"))[0])
    out = load_model(enhance_run).restore(img)
    assert out.array.shape == img.array.shape and (out.affine == img.affine).all()
    # physical units: the restored intensities stay on the input's scale
    assert abs(float(out.array.mean()) - float(img.array.mean())) < 0.1 * float(img.array.std())


def test_ct_padding_below_air_is_air_for_the_model_and_kept_in_the_output(enhance_run):
    """A real CT slice with -3024 HU outside the scanner's field of view (pydicom's 693_UNCR)."""
    import numpy as np
    from pydicom.data import get_testdata_file

    from medcnn.infer.enhancer import Enhancer
    from medcnn.io import read_image
    from medcnn.transforms.normalize import CT_FLOOR_HU

    a = np.asarray(read_image(get_testdata_file("693_UNCR.dcm")).array, np.float32)
    pad = a < CT_FLOOR_HU
    assert pad.mean() > 0.1  # the scan has padding corners
    plan = load_model(enhance_run).plan.override(CT_WINDOW)
    seen = []

    class Identity(torch.nn.Module):  # residual U-Net predicting no correction; records what it sees
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros_like(x)

    out = Enhancer(plan, Identity(), bf16=False).restore_array(a)
    assert float(seen[0].min()) >= -1e-6  # the network saw air (normalised 0), never -3024 HU
    assert (out[pad] == a[pad]).all()  # the padding comes back unchanged
    assert np.abs(out[~pad] - a[~pad]).max() < 0.05


def test_intensities_far_outside_a_ct_window_are_warned_about(enhance_run, caplog):
    """A real CT slice fits a CT model's HU window; the same slice in tenths of HU (as some exports
    store it) does not, and is restored with a stated warning. Per-image normalisation never warns."""
    import logging

    import numpy as np
    from pydicom.data import get_testdata_file

    from medcnn.infer.enhancer import Enhancer
    from medcnn.io import read_image
    from medcnn.io.image import Image

    mr = load_model(enhance_run)
    ct = Enhancer(mr.plan.override(CT_WINDOW), mr.net,
                  bf16=False)
    image = read_image(get_testdata_file("693_UNCR.dcm"))
    assert ct.range_warning(image.array) is None and mr.range_warning(image.array) is None
    tenths = Image(np.asarray(image.array, np.float32) * 10, image.affine, {"source": "ct_tenths_hu"})
    msg = ct.range_warning(tenths.array)
    assert msg and "training window [-1024, 1500]" in msg and mr.range_warning(tenths.array) is None
    with caplog.at_level(logging.WARNING, logger="medcnn.infer"):
        out = ct.restore(tenths)
    assert out.array.shape == tenths.array.shape
    assert any("ct_tenths_hu" in r.getMessage() and "far outside" in r.getMessage() for r in caplog.records)


def test_predict_reports_the_range_warning(enhance_run, tmp_path):
    """`predict` with a CT-window model on the real CT slice in tenths of HU: restored, and the
    results say why the output is not to be trusted."""
    import json
    import shutil

    import numpy as np
    from pydicom.data import get_testdata_file

    from medcnn.cli.main import main
    from medcnn.io import read_image
    from medcnn.io.nifti import write_nifti

    run = tmp_path / "ct_run"
    shutil.copytree(enhance_run, run)
    for f in (run / "checkpoints").glob("*.ckpt"):  # the plan a run restores with is the checkpoint's
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
        ckpt["hyper_parameters"]["plan"]["preprocessing"].update(normalization="window",
                                                                 normalization_args={"window": [-1024.0, 1500.0]})
        torch.save(ckpt, f)
    image = read_image(get_testdata_file("693_UNCR.dcm"))
    image.array = np.asarray(image.array, np.float32) * 10
    nii = write_nifti(image, tmp_path / "ct_tenths.nii.gz")
    assert main(["predict", str(run), str(nii), "--out", str(tmp_path / "pred"), "--json",
                 str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert "far outside the training window" in rows[0]["warning"]


def test_enhance_cli_errors(mr_dir, capsys):
    assert main(["train", str(mr_dir), "--task", "enhance"]) == 2
    assert "needs --degradation" in capsys.readouterr().err
    assert main(["train", str(mr_dir), "--degradation", "blur"]) == 2
    assert "--degradation must be one of" in capsys.readouterr().err


def test_predict_dicom_series_writes_a_new_derived_series(enhance_run, dicom_series_dir, tmp_path):
    import pydicom

    out = tmp_path / "pred"
    assert main(["predict", str(enhance_run), str(dicom_series_dir), "--out", str(out)]) == 0
    written = sorted((out / dicom_series_dir.name / "dicom").glob("*.dcm"))
    sources = {}
    for f in dicom_series_dir.iterdir():
        try:
            ds = pydicom.dcmread(f)
        except pydicom.errors.InvalidDicomError:
            continue
        sources[(float(ds.ImagePositionPatient[2]), ds.InstanceNumber)] = ds
    assert len(written) == len(sources)
    new = [pydicom.dcmread(f) for f in written]
    assert len({d.SeriesInstanceUID for d in new}) == 1
    src_uids = {d.SOPInstanceUID for d in sources.values()}
    assert not {d.SOPInstanceUID for d in new} & src_uids
    assert new[0].SeriesInstanceUID not in {d.SeriesInstanceUID for d in sources.values()}
    for d in new:
        s = sources[(float(d.ImagePositionPatient[2]), d.InstanceNumber)]
        assert d.StudyInstanceUID == s.StudyInstanceUID and "DERIVED" in d.ImageType
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows",
                   "Columns", "PixelRepresentation", "BitsStored", "BitsAllocated"):
            assert d.get(kw) == s.get(kw), kw
        assert float(d.get("RescaleSlope", 1)) == float(s.get("RescaleSlope", 1))
        assert "medcnn" in d.SeriesDescription and "gaussian" in d.DerivationDescription
        px = d.pixel_array
        assert px.shape == s.pixel_array.shape and px.dtype == s.pixel_array.dtype
    assert (out / dicom_series_dir.name / "comparison.png").is_file()
    # the inputs are untouched
    assert all(pydicom.dcmread(f).SOPInstanceUID in src_uids for f in dicom_series_dir.iterdir()
               if f.is_file() and not f.name.startswith("."))


def test_predict_nifti_and_png_keep_their_format(enhance_run, mr_dir, tmp_path):
    import nibabel as nib
    import numpy as np
    from PIL import Image as PILImage

    nii = sorted(mr_dir.glob("*.nii.gz"))[1]
    png = tmp_path / "slice.png"
    vol = np.asarray(nib.load(str(nii)).dataobj, dtype=np.float32)
    PILImage.fromarray(np.clip(vol[:, :, vol.shape[2] // 2] / vol.max() * 255, 0, 255).astype(np.uint8)).save(png)
    out = tmp_path / "pred"
    assert main(["predict", str(enhance_run), str(nii), str(png), "--out", str(out)]) == 0
    restored = nib.load(str(out / nii.name.replace(".nii.gz", "") / "restored.nii.gz"))
    assert restored.shape == vol.shape and np.allclose(restored.affine, nib.load(str(nii)).affine)
    back = np.asarray(PILImage.open(out / "slice" / "restored.png"))
    assert back.dtype == np.uint8 and back.shape == np.asarray(PILImage.open(png)).shape
    assert main(["predict", str(enhance_run), str(nii), "--out", str(out)]) == 2  # never overwrites silently


def test_blind_spot_masks_only_with_neighbour_values(mr_dir):
    from medcnn.tasks.enhance.module import blind_spot
    from medcnn.train.enhance_data import load_slices

    ds = load_enhance(mr_dir)
    p = default_plan(ds, str(mr_dir), "gaussian")
    x = torch.stack([s[:, :32, :32] for s in load_slices(p, ds, [(ds.sources[0].id, k) for k in range(10, 14)])])
    masked, mask = blind_spot(x, 0.05, radius=2, generator=torch.Generator().manual_seed(0))
    assert 0.03 < mask.float().mean() < 0.07
    assert torch.equal(masked[~mask], x[~mask])
    # a masked pixel takes the value of some other pixel within 2 of it
    b, c, i, j = (int(v) for v in mask.nonzero()[0])
    window = x[b, c, max(0, i - 2):i + 3, max(0, j - 2):j + 3]
    assert (window == masked[b, c, i, j]).any()


def test_noise2void_trains_without_clean_images(mr_dir, tmp_path):
    run = tmp_path / "n2v"
    rc = main(["train", str(mr_dir), "--degradation", "none", "--out", str(run), "--epochs", "1", "--no-progress",
               "--set", "enhance.patches_per_epoch=64", "--set", "max_minutes=0"])
    assert rc == 0
    hist = json.loads((run / "metrics.json").read_text())["epochs"]
    assert hist[0]["val_psnr"] > 0 and hist[0]["val_psnr_degraded"] is None
    assert json.loads((run / "run.json").read_text())["n"]["train_slices"] > 0
    assert main(["train", str(mr_dir), "--degradation", "none", "--set", "enhance.mode=supervised",
                 "--out", str(tmp_path / "x")]) == 2  # nothing to supervise with


def test_extra_training_images_feed_training_only(mr_dir, dicom_series_dir):
    """Hippocampus MRI volumes plus the TCIA series as extra training data: a share of the
    patches comes from the extra images; validation and test never see them."""
    import numpy as np

    from medcnn.train.enhance_data import enhance_loaders

    ds = load_enhance(mr_dir)
    base = default_plan(ds, str(mr_dir), "gaussian").override(["enhance.patches_per_epoch=64"])
    plan = base.override([f"enhance.extra_train=['{dicom_series_dir}']", "enhance.extra_share=0.25"])
    tl0, _, vp0, _ = enhance_loaders(base, ds)
    tl, _, vp, rec = enhance_loaders(plan, ds)
    n_own = len(tl0.dataset.slices)
    assert rec["extra_train"] == {str(dicom_series_dir): 24} and len(tl.dataset.slices) == n_own + 24
    assert len(vp) == len(vp0) and all(torch.equal(a[1], b[1]) for a, b in zip(vp, vp0))
    w = tl.dataset.weights
    assert w[n_own:].sum() == pytest.approx(0.25) and np.allclose(w[:n_own], w[0])
    x, y = next(iter(tl))
    assert x.shape == y.shape == (plan.batch_size, 1, *plan.enhance.patch_size)


def test_lowdose_ct_training_prepares_projections_within_the_budget(tmp_path):
    """Real CT slices (pydicom-data): the projections are computed once before training, counted in
    the time budget, and training runs on the cached draws."""
    import shutil
    from pathlib import Path

    import data_store  # pydicom-data

    src = Path(data_store.__file__).parent / "data"
    data = tmp_path / "ct"
    data.mkdir()
    for k, name in enumerate(("693_UNCR.dcm", "explicit_VR-UN.dcm", "bad_sequence.dcm", "693_J2KR.dcm")):
        (data / f"scan{k}").mkdir()  # one series per folder
        shutil.copy(src / name, data / f"scan{k}" / name)
    run = tmp_path / "run"
    assert main(["train", str(data), "--degradation", "lowdose-ct", "--level", "5000,50000", "--out", str(run),
                 "--epochs", "2", "--no-progress", "--set", "enhance.ct_views=45", "--set", "max_minutes=0.5",
                 "--set", "enhance.patches_per_epoch=32"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["data_prepare_seconds"] > 0
    assert info["time_budget"]["data_prepare_minutes"] == pytest.approx(info["data_prepare_seconds"] / 60, abs=0.01)
    assert info["best_val_score"] is not None


def test_a_label_map_or_far_heavier_noise_is_said(enhance_run, mr_dir, hippocampus_dir):
    """A denoiser for sigma 25/255 given a label map, or a real MR slice under sigma 0.3: a stated
    warning in the result (restored as given); the clean scan itself gets none."""
    from medcnn.io import read_image
    from medcnn.io.image import Image

    enh = load_model(enhance_run)
    scan = read_image(sorted(mr_dir.glob("*.nii.gz"))[0])
    assert "range_warning" not in enh.restore(scan).meta
    label = read_image(sorted((hippocampus_dir / "labelsTr").glob("*.nii.gz"))[0])
    assert "a label map or mask" in enh.restore(label).meta["range_warning"]
    a = scan.array.astype(np.float32)
    span = float(np.percentile(a, 99.5) - np.percentile(a, 0.5))
    noisy = a + np.random.default_rng(0).normal(0, 0.3 * span, a.shape).astype(np.float32)
    assert "far above the trained levels" in enh.restore(Image(noisy, scan.affine, scan.meta)).meta["range_warning"]


def test_evaluate_on_clean_images_never_seen_in_training(enhance_run, data_root):
    """Another dataset's clean images (DnCNN's Set12 photographs) as the test set: degraded the same
    way, every method on the same noise, results beside the run's own."""
    from conftest import require
    from medcnn.tasks import evaluate

    set12 = require(data_root / "natural_denoise" / "set12")
    r = evaluate(enhance_run, data=str(set12), limit=3)
    assert r["split"] == "all" and r["data"] == str(set12) and r["n_images"] == 3
    rows = {row["method"]: row for row in r["rows"]}
    assert rows["noisy"]["psnr"] == pytest.approx(20.17, abs=0.3) and rows["bm3d"]["psnr"] > rows["noisy"]["psnr"]
    assert (enhance_run / "eval" / "enhance_set12.json").is_file()
