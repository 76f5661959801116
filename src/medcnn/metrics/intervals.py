"""95 % confidence intervals by bootstrap over test cases (Efron's percentile bootstrap).

How every interval medcnn reports is made:

- RESAMPLES (2,000) resamples of the test cases, drawn with replacement, seeded (SEED), so the
  same predictions always give the same interval.
- Classification resamples within each class (stratified: every resample keeps the class counts,
  so AUC is always defined); segmentation and enhancement resample cases / images.
- The interval is the 2.5th to 97.5th percentile of the metric over the resamples.
- Two methods scored on the same cases are compared *paired*: each resample scores both on the
  same cases and the interval is that of their difference.
- Several seeds (training runs) of one method: each resample scores every seed on the same cases
  and averages them, so the interval is that of the seed-mean for these test cases; the spread
  between seeds (training noise) is reported separately, as the standard deviation.

The statistic is a function of an index batch ``(B, n)`` returning ``(B,)`` values, so metrics that
are means over cases cost one vectorised gather, and AUC is computed from ranks for all
resamples at once.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
_CHUNK = 250  # resamples per batch: bounds the memory of (B, n) arrays

Statistic = Callable[[np.ndarray], np.ndarray]


def resample_indices(n: int, strata: np.ndarray | None = None, resamples: int = RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """(resamples, n) case indices drawn with replacement, within each stratum when given."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(resamples, n))
    strata = np.asarray(strata)
    if strata.ndim > 1:  # e.g. multi-label rows: one stratum per label pattern
        strata = np.unique(strata.reshape(len(strata), -1), axis=0, return_inverse=True)[1].ravel()
    out = np.empty((resamples, n), dtype=np.int64)
    col = 0
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        out[:, col:col + len(members)] = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        col += len(members)
    return out


def bootstrap(statistic: Statistic, n: int, strata: np.ndarray | None = None, resamples: int = RESAMPLES,
              seed: int = SEED) -> np.ndarray:
    """The statistic on every resample, (resamples,)."""
    idx = resample_indices(n, strata, resamples, seed)
    return np.concatenate([np.asarray(statistic(idx[i:i + _CHUNK]), dtype=np.float64)
                           for i in range(0, resamples, _CHUNK)])


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """[lo, hi] percentile interval of bootstrap values (NaN resamples dropped); None if none is finite."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    a = (1 - level) / 2
    return [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))]


def ci(statistic: Statistic, n: int, strata: np.ndarray | None = None, **kw) -> list[float] | None:
    """The 95 % interval of ``statistic`` over bootstrap resamples of ``n`` cases."""
    return interval(bootstrap(statistic, n, strata, **kw))


def mean_ci(values: Sequence[float] | np.ndarray, strata: np.ndarray | None = None, **kw) -> list[float] | None:
    """The interval of the mean of per-case values (Dice, PSNR, ...); NaN cases are left out of each mean."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]  # (n, seeds): a column per seed, averaged
    return ci(lambda idx: np.nanmean(v[idx], axis=(1, 2)), len(v), strata, **kw)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], **kw) -> list[float] | None:
    """The interval of mean(a) - mean(b) for two methods' per-case values on the same cases."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return mean_ci(d, **kw)


def resampled_auc(scores: np.ndarray, target: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUC of every bootstrap resample ``idx`` (B, n) of one score vector (n,) against the boolean
    ``target`` (n,): the numbers ``rank_auc(scores[idx], target[idx])`` gives, without sorting each
    resample. The scores are sorted once into groups of equal value; a resample is then its count of
    positives and negatives per group, and AUC = sum over groups of positives x (negatives below +
    half the negatives tied) / (P x N). NaN where a resample has one class only."""
    scores, target = np.asarray(scores), np.asarray(target, dtype=bool)
    order = np.argsort(scores, kind="stable")
    new_value = np.r_[True, scores[order][1:] != scores[order][:-1]]
    group = np.empty(len(scores), dtype=np.int64)
    group[order] = np.cumsum(new_value) - 1
    n_groups, b = int(new_value.sum()), idx.shape[0]
    flat = group[idx] + n_groups * np.arange(b)[:, None]
    hit = target[idx]
    pos = np.bincount(flat[hit], minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)
    neg = np.bincount(flat[~hit], minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def rank_auc(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """AUC of each row of ``scores`` (B, n) against the boolean ``target`` (B, n), from average
    ranks (ties count half, as roc_auc_score); NaN where a row has one class only."""
    from scipy.stats import rankdata

    r = rankdata(scores, axis=1)
    pos = target.sum(1).astype(np.float64)
    neg = target.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((r * target).sum(1) - pos * (pos + 1) / 2) / (pos * neg)
