"""Bootstrap intervals: coverage, stratification, and the batched metrics equal their one-shot versions."""
import numpy as np
import pytest

from medcnn.metrics.classification import (
    _auc_batch,
    _case_terms,
    _ece_batch,
    auc_score,
    classification_intervals,
    classification_report,
    expected_calibration_error,
)
from medcnn.metrics.intervals import mean_ci, paired_difference_ci, rank_auc, resample_indices, resampled_auc


def test_stratified_resamples_keep_class_counts():
    strata = np.array([0] * 7 + [1] * 3 + [2] * 40)
    idx = resample_indices(50, strata, resamples=300, seed=1)
    counts = np.stack([np.bincount(strata[row], minlength=3) for row in idx])
    assert (counts == [7, 3, 40]).all()
    assert (resample_indices(50, strata, resamples=300, seed=1) == idx).all()


def test_mean_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [lo <= 0.5 <= hi for lo, hi in (mean_ci(rng.beta(2, 2, size=60), resamples=1000, seed=i)
                                          for i in range(300))]
    assert 0.90 <= np.mean(hits) <= 0.985


def test_paired_difference_sees_what_unpaired_intervals_hide():
    rng = np.random.default_rng(1)
    case = rng.normal(30, 3, size=80)  # case difficulty shared by both methods
    a, b = case + 0.3 + rng.normal(0, 0.1, 80), case + rng.normal(0, 0.1, 80)
    lo, hi = paired_difference_ci(a, b)
    assert 0.2 < lo < 0.3 < hi < 0.4
    (alo, _), (_, bhi) = mean_ci(a), mean_ci(b)
    assert alo < bhi  # the two intervals overlap, the paired one does not cover 0


def _fake(label_type, k, n=900, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    if label_type == "multilabel":
        probs = 1 / (1 + np.exp(-logits))
        return probs.astype(np.float32), (rng.random((n, k)) < probs).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = np.round(probs, 2)  # ties, as real probabilities have
    probs /= probs.sum(1, keepdims=True)
    return probs.astype(np.float32), np.array([rng.choice(k, p=p) for p in probs])


@pytest.mark.parametrize("label_type,k", [("binary", 2), ("multiclass", 6), ("multilabel", 4)])
def test_batched_metrics_equal_the_reported_ones(label_type, k):
    probs, labels = _fake(label_type, k)
    whole = np.arange(len(labels))[None]
    t = _case_terms(probs, labels, label_type)
    assert _auc_batch(probs, labels, label_type, whole)[0] == pytest.approx(auc_score(probs, labels, label_type), abs=1e-12)
    assert _ece_batch(t["conf"], t["correct"], whole)[0] == pytest.approx(
        expected_calibration_error(probs, labels, label_type), abs=1e-6)
    r = classification_report(probs, labels, label_type, [str(i) for i in range(k)])
    for name in ("auc", "acc", "ece", "brier"):
        lo, hi = r[f"{name}_ci95"]
        assert lo <= r[name] <= hi and hi - lo < 0.2, (name, r[name], lo, hi)


def test_rank_auc_counts_ties_half():
    scores = np.array([[0.1, 0.5, 0.5, 0.9]])
    target = np.array([[False, False, True, True]])
    assert rank_auc(scores, target)[0] == pytest.approx(0.875)  # 3.5 of 4 pairs


def test_seed_mean_interval_is_narrower_than_one_seeds_when_seeds_disagree():
    probs, labels = _fake("binary", 2, seed=3)
    other, _ = _fake("binary", 2, seed=4)
    one = classification_intervals(probs, labels, "binary")["acc"]
    both = classification_intervals([probs, other[:, ::-1].copy()], labels, "binary")["acc"]
    assert both[1] - both[0] < one[1] - one[0]


def test_resampled_auc_equals_ranking_every_resample():
    """Counting positives and negatives per tied score group gives what sorting each resample gives."""
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # many ties
    target = rng.random(300) < 0.3
    idx = resample_indices(300, target, resamples=64, seed=1)
    np.testing.assert_allclose(resampled_auc(scores, target, idx), rank_auc(scores[idx], target[idx]), atol=1e-12)
    one_class = np.zeros((1, 300), dtype=np.int64)  # every draw the same (negative) case
    assert np.isnan(resampled_auc(scores, target, one_class + int(np.flatnonzero(~target)[0])))[0]
