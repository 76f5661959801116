"""Run folders written before plan schema 2 (tests/fixtures/runs_v1, made with commit 2fa2227) load
through the plan migration and predict what the code that wrote them predicted."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from medcnn.infer.loading import load_network
from medcnn.io import read_image
from medcnn.plan import Plan
from medcnn.plan_migrations import SCHEMA_VERSION
from medcnn.tasks import get_task, load_model

RUNS = Path(__file__).parent / "fixtures" / "runs_v1"
FP32 = ["precision=32"]  # as the expected predictions were made (bfloat16 depends on the CPU)
# the old overrides of expected.json (version-1 fields), in version-2 fields
CLS_PERCENTILE = ["preprocessing.normalization=percentile_clip"]
SEG_CT = ["preprocessing.normalization=ct",
          "preprocessing.normalization_args={clip: [30.0, 263920.375], mean: 19713.957, std: 56578.23}"]
ENH_WINDOW = ["preprocessing.normalization=window", "preprocessing.normalization_args={window: [0.0, 1500.0]}"]


def load_run(run: Path):
    """(folder, plan, network) of a run, built by its task (the run's plan.yaml decides inference settings)."""
    task = get_task(Plan.load(Path(run) / "plan.yaml").task)
    return load_network(run, "best", task.build_network, task.inference_plan)[:3]


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def run_copy(task: str, tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the fixture run (loading must not write into the repository) and its expected.json."""
    run = tmp_path / task
    shutil.copytree(RUNS / task, run, ignore=shutil.ignore_patterns("expected.json"))
    return run, json.loads((RUNS / task / "expected.json").read_text())


@pytest.mark.parametrize("task,normalization,args", [
    ("classify", "uint8", {}), ("segment", "zscore", {}), ("enhance", "percentile_affine", {})])
def test_old_plans_migrate(task, normalization, args):
    plan = Plan.load(RUNS / task / "plan.yaml")
    assert plan.schema_version == SCHEMA_VERSION
    assert (plan.preprocessing.normalization, plan.preprocessing.normalization_args) == (normalization, args)
    _, ckpt_plan, _ = load_run(RUNS / task)  # the plan inside the checkpoint, migrated as well
    assert ckpt_plan.preprocessing.normalization == normalization and ckpt_plan.schema_version == SCHEMA_VERSION


def test_old_classifier_predicts_as_before(tmp_path, breast_npz):
    from PIL import Image as PILImage

    from medcnn.infer.predictor import Predictor

    run, expected = run_copy("classify", tmp_path)
    n = len(expected["uint8"]["argmax"])
    paths = []
    for i, a in enumerate(np.load(breast_npz)["test_images"][:n]):
        paths.append(tmp_path / f"breast_test_{i}.png")
        PILImage.fromarray(a).save(paths[-1])
    temperature = load_model(run).temperature
    for key, sets in (("uint8", []), ("percentile", CLS_PERCENTILE)):
        _, plan, net = load_run(run)
        pred = Predictor(plan.override(FP32 + sets), net, run, temperature=temperature)
        x = np.stack([pred.preprocess(f).numpy() for f in paths])
        assert sha256(x.astype(np.float32)) == expected[key]["input_sha256"], key  # bit-identical input
        probs = pred.predict_array(x)
        assert probs.argmax(1).tolist() == expected[key]["argmax"], key
        np.testing.assert_allclose(probs, expected[key]["probabilities"], rtol=0, atol=1e-6, err_msg=key)


def test_old_segmenter_predicts_as_before(tmp_path, hippocampus_dir):
    from medcnn.infer.segmenter import Segmenter

    run, expected = run_copy("segment", tmp_path)
    image = read_image(require(hippocampus_dir / "imagesTs" / Path(expected["input"]).name))
    for key, sets in (("zscore", []), ("ct", SEG_CT)):
        _, plan, net = load_run(run)
        seg = Segmenter(plan.override(FP32 + sets), net, run)
        assert seg.post == "largest_component"  # RUN/postprocess.json
        label = np.asarray(seg.segment(image).label.array)
        values, counts = np.unique(label, return_counts=True)
        assert {str(int(v)): int(c) for v, c in zip(values, counts)} == expected[key]["counts"], key
        assert list(label.shape) == expected[key]["shape"] and sha256(label) == expected[key]["sha256"], key


def test_old_enhancer_restores_as_before(tmp_path, dicom_series_dir):
    from medcnn.infer.enhancer import Enhancer

    run, expected = run_copy("enhance", tmp_path)
    image = read_image(require(dicom_series_dir / Path(expected["input"]).name))
    stride = expected["stride"]
    for key, sets in (("percentile", []), ("window", ENH_WINDOW)):
        _, plan, net = load_run(run)
        a = np.asarray(Enhancer(plan.override(sets), net, run, bf16=False).restore(image).array, np.float32)
        rec = expected[key]
        tol = 1e-6 * (rec["max"] - rec["min"])  # 1e-6 of the image's range (physical units)
        assert list(a.shape) == rec["shape"], key
        np.testing.assert_allclose(a[..., ::stride, ::stride].ravel(), rec["every_stride"], rtol=0, atol=tol, err_msg=key)
        assert abs(float(a.mean(dtype=np.float64)) - rec["mean"]) <= tol, key
        assert abs(float(a.min()) - rec["min"]) <= tol and abs(float(a.max()) - rec["max"]) <= tol, key
