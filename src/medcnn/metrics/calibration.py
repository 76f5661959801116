"""Temperature scaling (Guo et al., ICML 2017) fitted on validation logits, and the
accuracy-coverage curve used to judge abstention ("uncertain - refer")."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: np.ndarray, labels: np.ndarray, label_type: str) -> float:
    """The T > 0 minimising the negative log-likelihood of ``logits / T`` on (validation) data."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll():
        opt.zero_grad()
        scaled = z / log_t.exp()
        if label_type == "multilabel":
            loss = F.binary_cross_entropy_with_logits(scaled, y.double())
        else:
            loss = F.cross_entropy(scaled, y.long())
        loss.backward()
        return loss

    opt.step(nll)
    t = float(log_t.exp())
    return t if np.isfinite(t) and 1e-2 < t < 1e2 else 1.0


def accuracy_coverage(probs: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """Keep the most confident cases first: accuracy among the kept ones at each coverage level,
    with the uncertainty threshold (1 - confidence) that gives it."""
    conf = probs.max(1)
    order = np.argsort(-conf, kind="stable")
    correct = (probs.argmax(1) == labels)[order]
    n = len(order)
    rows = []
    for cov in (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5):
        k = max(1, int(round(cov * n)))
        rows.append({"coverage": round(k / n, 4), "accuracy": float(correct[:k].mean()),
                     "max_uncertainty": float(1 - conf[order[k - 1]])})
    return rows
