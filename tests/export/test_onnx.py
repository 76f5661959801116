"""ONNX export of each task's run, parity with PyTorch on real files, and `predict --engine onnx`."""
import json
import shutil

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from medcnn.cli.main import main
from medcnn.errors import RunFolderError
from medcnn.tasks import load_model


def _copy(run, tmp_path):
    dest = tmp_path / run.name
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export", "predictions"))
    return dest


def test_classifier_export_is_self_contained_and_predicts_like_pytorch(breast_run, breast_npz, tmp_path, capsys):
    run = _copy(breast_run, tmp_path)
    assert main(["export", str(run)]) == 0
    assert "max |ONNX - PyTorch|" in capsys.readouterr().out
    rec = json.loads((run / "export" / "model.json").read_text())
    assert rec["parity"]["ok"] and rec["parity"]["max_abs_diff"] <= 1e-4
    assert "validation images" in rec["parity"]["inputs"] and rec["task"] == "classify"
    proto = onnx.load(str(run / "export" / "model.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["medcnn"])["plan"]["num_classes"] == 2  # the file alone says how to use it
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]

    images = np.load(breast_npz)["test_images"][:5]
    files = []
    for i, a in enumerate(images):
        Image.fromarray(a).save(tmp_path / f"b{i}.png")
        files.append(str(tmp_path / f"b{i}.png"))
    res = {}
    for engine in ("torch", "onnx"):
        assert main(["predict", str(run), *files, "--engine", engine, "--json", str(tmp_path / f"{engine}.json")]) == 0
        res[engine] = json.loads((tmp_path / f"{engine}.json").read_text())["results"]
    for a, b in zip(res["torch"], res["onnx"]):  # the torch engine runs bf16 autocast: close, not 1e-4 (that is float32's)
        assert a["prediction"] == b["prediction"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) <= 0.02

    # the graph's own probabilities output needs no medcnn at all
    import onnxruntime as ort

    x = np.stack([np.asarray(Image.open(f), np.float32)[None] / 255 for f in files])
    logits, probs = ort.InferenceSession(str(run / "export" / "model.onnx")).run(None, {"image": x})
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and probs.shape == (5, 2)


def test_zoom_tta_exports_with_parity(breast_run, breast_npz, tmp_path, monkeypatch):
    """``tta: scale`` (interpolate, then pad or crop: static sizes) goes into the graph and matches PyTorch."""
    import dataclasses

    from medcnn.export import onnx as exp
    from medcnn.infer.predictor import Predictor

    run = _copy(breast_run, tmp_path)
    plain = exp.torch_model

    def zoom_tta(run, checkpoint):
        m = plain(run, checkpoint)
        z = Predictor(dataclasses.replace(m.plan, tta="scale"), m.net, m.run_dir, m.checkpoint, m.temperature)
        z.bf16 = False
        return z

    monkeypatch.setattr(exp, "torch_model", zoom_tta)
    rec = exp.export_run(run)
    assert rec["plan"]["tta"] == "scale"
    assert rec["parity"]["ok"] and rec["parity"]["max_abs_diff"] <= 1e-4  # parity is against the zoomed views

    import onnxruntime as ort

    x = (np.load(breast_npz)["test_images"][:8, None] / 255).astype(np.float32)  # real test images
    _, probs = ort.InferenceSession(str(run / "export" / "model.onnx")).run(None, {"image": x})
    np.testing.assert_allclose(probs, zoom_tta(run, "best").predict_array(x), atol=1e-4)
    assert not np.allclose(probs, plain(run, "best").predict_array(x), atol=1e-4)  # the views are in the graph


def test_segmentation_export_masks_match_pytorch(hippo_run, hippocampus_dir, tmp_path):
    from medcnn.export.onnx import export_run
    from medcnn.io import read_image

    run = _copy(hippo_run, tmp_path)
    rec = export_run(run)
    assert rec["parity"]["ok"] and rec["parity"]["mask_voxels_differing_off_ties"] == 0
    assert rec["outside_the_graph"]["sliding_window"]["size"] == rec["input"]["shape"][2:]
    case = sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0]  # never seen by the run
    image = read_image(case)
    ref = load_model(run)
    ref.bf16 = False
    p_torch, p_onnx = ref.probabilities(image), load_model(run, engine="onnx").probabilities(image)
    assert float((p_torch - p_onnx).abs().max()) <= 1e-4
    out = tmp_path / "masks"
    assert main(["predict", str(run), str(case), "--engine", "onnx", "--out", str(out)]) == 0
    mask = nib.load(str(next(out.rglob("mask.nii.gz"))))
    assert np.allclose(mask.affine, nib.load(str(case)).affine)
    from medcnn.infer.segmenter import postprocess

    # the run's post-processing, if `evaluate` chose one (test order: test_segment may evaluate hippo_run first)
    expected = postprocess(p_onnx.argmax(0).numpy().astype(np.uint8), ref.post, ref.plan.num_classes)
    assert np.array_equal(np.asarray(mask.dataobj), expected)


def test_enhancement_export_restores_like_pytorch(enhance_run, mr_dir, tmp_path):
    from medcnn.export.onnx import export_run
    from medcnn.io import read_image

    run = _copy(enhance_run, tmp_path)
    rec = export_run(run)
    assert rec["parity"]["ok"] and rec["input"]["shape"][2].endswith("*h") and rec["outputs"]["restored"]
    vol = read_image(sorted(mr_dir.glob("*.nii.gz"))[1])
    ref = load_model(run)
    ref.bf16 = False
    a, b = ref.restore(vol).array, load_model(run, engine="onnx").restore(vol).array
    span = float(np.percentile(vol.array, 99.5) - np.percentile(vol.array, 0.5))
    assert a.shape == b.shape == vol.array.shape  # odd slice sizes: the graph takes any multiple of the stride
    assert np.abs(a - b).max() <= 1e-4 * span


def test_failed_parity_writes_nothing_and_stale_exports_are_refused(breast_run, tmp_path, monkeypatch):
    from medcnn.export import onnx as exp
    from medcnn.infer.onnx_net import OnnxNet

    run = _copy(breast_run, tmp_path)
    with pytest.raises(RunFolderError, match="medcnn export"):
        load_model(run, engine="onnx")
    assert main(["predict", str(run), str(run / "plan.yaml"), "--engine", "onnx"]) == 2

    forward = OnnxNet.forward
    monkeypatch.setattr(OnnxNet, "forward", lambda self, x: forward(self, x) * 1.01)  # softmax ignores shifts
    with pytest.raises(exp.ExportError, match="disagree"):
        exp.export_run(run)
    assert not (run / "export" / "model.onnx").exists() and not (run / "export" / "model.json").exists()
    monkeypatch.setattr(OnnxNet, "forward", forward)

    exp.export_run(run)
    assert load_model(run, engine="onnx").predict_array(torch.rand(2, 1, 28, 28)).shape == (2, 2)
    with pytest.raises(RunFolderError, match="export is of the 'best'"):
        load_model(run, "last", engine="onnx")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)  # e.g. training resumed later
    first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][first] += 0.01
    torch.save(ckpt, run / "checkpoints" / "best.ckpt")
    with pytest.raises(RunFolderError, match="older than"):
        load_model(run, engine="onnx")
