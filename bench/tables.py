"""The result tables, made from the JSON records in bench/results/ and nowhere else: every bench's
full table on the documentation site's results page (docs/results.md), and a short summary in the
README.

    python bench/tables.py            rewrite every table between its markers
    python bench/tables.py --check    exit 1 and name the tables that differ from their records

Each benchmark script owns its table (``table(records)``, ``START``/``END`` markers) and rewrites it
after a run; this script rebuilds all of them from the records alone, so a hand edit of a number,
or of a record without its table, shows up (tests/bench/test_tables.py runs ``--check``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

BENCHES = ("classify", "segment", "enhance", "infer", "serve", "transfer", "applications", "scale", "domain", "zoo")
"""bench/<name>.py, with its records in bench/results/<name>.json."""
PAGE = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
SUMMARY = ("<!-- bench-summary:start -->", "<!-- bench-summary:end -->")
ENHANCE_SUMMARY = [("bsd68-gaussian", "BSD68", 25, None),
                   ("mr-lgg", "pgbm005", 25, "goal: BM3D + 1.0 dB on a scan never seen in training"),
                   ("mr-lgg", "external", 25, "goal: BM3D + 0.5 dB"),
                   ("mr-lgg-rician", "pgbm005", None, "goal: above the fair baseline at every level"),
                   ("mr-lgg-rician", "lgg-held-out", None, "goal: above the fair baseline at every level")]
"""(case, part of the test set's name, sigma on 0-255 (None: every level of the case, one line),
goal; None: the record's published references) of the enhancement rows the README summarises;
``mr-lgg``: the LGG-trained MR case validation chose (bench/enhance.py ``chosen_mr_case``)."""

APPS_SUMMARY = {"lgg": ("segment, brain tumour", "TCGA-LGG, 3 MR sequences, 110 patients (5-fold CV)",
                        (("Dice", "dice_mean", "dice_mean_ci95"),)),
                "isic2017": ("classify, melanoma", "ISIC 2017 official validation (150 photographs)",
                             (("AUC", "auc", "auc_ci95"),)),
                "idrid-ex": ("segment, hard exudates", "IDRiD, 20 fundus photographs (4-fold CV)",
                             (("pixel AUPR", "aupr", "aupr_ci95"), ("per image", "aupr_per_image_mean", "aupr_per_image_ci95"))),
                "breastmnist-10pct": ("classify, 10 % of the labels", "breastmnist", (("AUC", "auc", "auc_ci95"),))}
"""(task, data, ((metric name, record key, its interval's key), ...)) of each application's README
line: every variant's test metrics (the variant's name is left out where the application has one
variant only)."""


def tables(results: Path = ROOT / "bench" / "results") -> dict[str, tuple[str, str, str]]:
    """{bench: (start marker, end marker, table text)} from the records; a bench's ``EXTRA_TABLES``
    ({name: (records file, start, end, table function)}) adds tables made from other record files."""
    out = {}
    for name in BENCHES:
        mod = common.bench_module(name)
        records = json.loads((results / f"{name}.json").read_text())
        out[name] = (mod.START, mod.END, mod.table(records))
        for extra, (file, start, end, make) in getattr(mod, "EXTRA_TABLES", {}).items():
            out[extra] = (start, end, make(json.loads((results / file).read_text())))
    return out


def _margin_key(record: dict) -> str:
    """The record's ``psnr_minus_<baseline>`` field: medcnn against the best baseline given the truth."""
    return next(k for k in record if k.startswith("psnr_minus_") and not k.endswith("_ci95"))


def summary(results: Path = ROOT / "bench" / "results") -> str:
    """The README's few lines: each classification and segmentation dataset's test metric with its
    interval beside its published reference, the denoising rows of ENHANCE_SUMMARY, and the
    input-domain check's false alarms."""
    load = lambda name: json.loads((results / f"{name}.json").read_text())  # noqa: E731
    ci = lambda r, k: f" [{r[k][0]:.3f}, {r[k][1]:.3f}]" if r.get(k) else ""  # noqa: E731
    lines = ["| task | data (test split) | medcnn | published reference |", "|---|---|---|---|"]
    for r in load("classify"):
        lines.append(f"| classify | {r['dataset']} | AUC {r['test_auc_mean']:.3f}{ci(r, 'test_auc_ci95')}, "
                     f"ACC {r['test_acc_mean']:.3f}{ci(r, 'test_acc_ci95')} | MedMNIST v2 best ResNet: "
                     f"AUC {r['paper_best_auc']:.3f}, ACC {r['paper_best_acc']:.3f} |")
    for r in load("segment"):
        lines.append(f"| segment | {r['dataset']} ({r['n_test']} cases) | Dice {r['dice_mean']:.3f}{ci(r, 'dice_mean_ci95')} "
                     f"| {r['reference']} |")
    enhance = load("enhance")
    chosen = common.bench_module("enhance").chosen_mr_case(enhance)
    for case, part, sigma, goal in ENHANCE_SUMMARY:
        case = chosen if case == "mr-lgg" else case
        rows = [r for r in enhance if r["method"] == "medcnn" and r["case"] == case and part in r["test_set"]]
        if sigma is None and rows:  # a blind model over a range: its margin at every level, one line
            cells = "; ".join(f"{r['level']:g}: {r[k]:+.2f} [{r[k + '_ci95'][0]:+.2f}, {r[k + '_ci95'][1]:+.2f}]"
                              for r in rows for k in [_margin_key(r)])
            lines.append(f"| denoise, {rows[0]['degradation']} {rows[0]['level']:g}-{rows[-1]['level']:g} (blind) | "
                         f"{rows[0]['test_set']} | dB vs {_margin_key(rows[0])[len('psnr_minus_'):]} at {cells} | {goal} |")
        for r in rows if sigma is not None else []:
            if round(r["level"] * 255) == sigma:
                lo, hi = r["psnr_ci95"]
                ref = goal or "published: " + ", ".join(f"{k} {v:.2f}" for k, v in r["reference"].items())
                k = _margin_key(r)
                lines.append(f"| denoise, σ {sigma}/255 | {r['test_set']} | PSNR {r['psnr']:.2f} dB [{lo:.2f}, {hi:.2f}]; "
                             f"{r[k]:+.2f} dB vs {k[len('psnr_minus_'):].upper()} | {ref} |")
    by_app: dict[str, list[dict]] = {}
    for r in load("applications"):
        by_app.setdefault(r["dataset"], []).append(r)
    for app, (task, data, metrics) in APPS_SUMMARY.items():
        if app in by_app:
            rows = by_app[app]
            cells = "; ".join(("" if len(rows) == 1 else f"{r['variant']} ") + ", ".join(
                f"{name} {r[key]:.3f}{ci(r, ci_key)}" for name, key, ci_key in metrics if key in r) for r in rows)
            lines.append(f"| {task} | {data} | {cells} | {by_app[app][0]['reference']} |")
    for rec in load("domain"):
        for row in rec["rows"]:
            if row.get("kind") == "in-distribution":
                lo, hi = row["flagged_ci95"]
                lines.append(f"| input-domain check | {row['model']} model, its own test images | false alarms "
                             f"{100 * row['flagged_share']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] | aim: under 2 % |")
    return "\n".join(lines)


def pages() -> dict[Path, dict[str, tuple[str, str, str]]]:
    """{file: {name: (start marker, end marker, table)}}: the results page and the README."""
    return {PAGE: tables(), README: {"summary": (*SUMMARY, summary())}}


def readme_table(text: str, start: str, end: str) -> str | None:
    """The text between two markers (without the newlines next to them), or None when absent."""
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def differing(page: Path = PAGE, expected: dict | None = None) -> list[str]:
    """The tables of ``page`` that are not the ones their records give (``expected``: the page's
    tables, default the results page's)."""
    text = page.read_text()
    expected = tables() if expected is None else expected
    return [name for name, (start, end, table) in expected.items() if readme_table(text, start, end) != table]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    args = ap.parse_args(argv)
    if args.check:
        bad = [(page, name) for page, expected in pages().items() for name in differing(page, expected)]
        for page, name in bad:
            print(f"{page.relative_to(ROOT)}: the bench-{name} table differs from its records in bench/results/ "
                  f"(run: python bench/tables.py)", file=sys.stderr)
        return 1 if bad else 0
    import common

    for page, expected in pages().items():
        for start, end, table in expected.values():
            common.update_readme(page, start, end, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
