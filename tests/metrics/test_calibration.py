"""Temperature scaling on a real trained model's validation logits."""
import torch
import torch.nn.functional as F

from medcnn.data.classification import load_classification
from medcnn.metrics.calibration import accuracy_coverage, fit_temperature
from medcnn.tasks import load_model


def test_temperature_minimises_validation_nll(breast_run, breast_npz):
    pred = load_model(breast_run)
    x, y = load_classification(str(breast_npz)).split("val")
    z = torch.from_numpy(pred.predict_logits(x))
    t = fit_temperature(z.numpy(), y, "binary")
    nll = lambda temp: float(F.cross_entropy(z / temp, torch.as_tensor(y)))
    assert nll(t) <= nll(1.0) + 1e-9
    assert nll(t) <= min(nll(t * 1.2), nll(t / 1.2)) + 1e-9  # a minimum, not just an improvement


def test_accuracy_coverage_keeps_confident_cases(breast_run, breast_npz):
    pred = load_model(breast_run)
    x, y = load_classification(str(breast_npz)).split("test")
    rows = accuracy_coverage(pred.predict_array(x), y)
    assert rows[0]["coverage"] == 1.0 and rows[-1]["coverage"] == 0.5
    u = [r["max_uncertainty"] for r in rows]
    assert u == sorted(u, reverse=True)  # less coverage <=> a stricter uncertainty threshold
