"""Ensembles from finished single runs: average the class probabilities of the benchmark's seed runs
(each run's best checkpoint with its fitted temperature, as `medcnn predict` uses them) and report
validation and test AUC / ACC per ensemble size, averaged over the seed combinations.

    .venv/bin/python bench/classify_members.py /tmp/exp/bench-classify/organamnist organamnist

The probe behind the planner's "at least two members for multi-class tasks"
(bench/results/EXPERIMENTS.md, session 26). Prints a table; writes nothing.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from medcnn.tasks import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, help="folder with seed<k>/ run folders (bench/classify.py --out OUT/<dataset>)")
    ap.add_argument("dataset", help="the data the runs were trained on (MedMNIST name or .npz)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()

    from medcnn.data.classification import load_classification
    from medcnn.metrics.classification import classification_report

    data = load_classification(args.dataset)
    probs = {}
    for s in args.seeds:
        pred = load_model(args.runs / f"seed{s}")
        for split in ("val", "test"):
            probs[s, split] = pred.predict_array(data.split(split)[0])
    print("| members | split | AUC | ACC | combinations |\n|---|---|---|---|---|")
    for k in range(1, len(args.seeds) + 1):
        for split in ("val", "test"):
            labels = data.split(split)[1]
            scores = []
            for combo in itertools.combinations(args.seeds, k):
                rep = classification_report(np.mean([probs[s, split] for s in combo], 0), labels,
                                            data.label_type, list(data.class_names))
                scores.append((rep["auc"], rep["acc"]))
            auc, acc = np.mean(scores, 0)
            print(f"| {k} | {split} | {auc:.4f} | {acc:.4f} | {len(scores)} |")


if __name__ == "__main__":
    main()
