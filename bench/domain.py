"""The input-domain check's false alarms and catches (issue #36), behind the README's domain table.

Two classifiers, trained with the default plan: BreastMNIST (ultrasound) and PneumoniaMNIST (chest
X-ray). Each is shown

- its own test split (in-distribution): the share flagged is the false-alarm rate;
- near inputs, same size and channel count, no header: PneumoniaMNIST test images into the
  BreastMNIST model, OrganAMNIST (abdominal CT) test images into the PneumoniaMNIST model;
- far inputs: the TCIA MR DICOM series (Modality MR), the 40 DRIVE fundus photographs (colour),
  and BloodMNIST test images (colour microscopy, no header).

"Flagged" is any verdict but in-domain (foreign: no class given; unusual: class given with a
warning). The thresholds were set on each model's validation split when it trained; the test
splits are read here, once. Intervals: 95 % Wilson intervals of each share.

    make bench-domain        (about 15 min on 2 CPU cores)

Writes bench/results/domain.json and the README table between the bench-domain markers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "bench/domain.py"
START, END = "<!-- bench-domain:start -->", "<!-- bench-domain:end -->"
MODELS = ("breastmnist", "pneumoniamnist")
NEAR = {"breastmnist": "pneumoniamnist", "pneumoniamnist": "organamnist"}
MAX_IMAGES = 2000  # images per MedMNIST input set (evenly spaced over its test split)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of the share k / n."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def medmnist_images(name: str, data: Path) -> list:
    """The test images of a MedMNIST npz as medcnn Images (no header, as the arrays come)."""
    from medcnn.io.image import Image

    x = np.load(data / "medmnist" / f"{name}.npz")["test_images"]
    idx = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_IMAGES)).astype(int))
    out = []
    for i in idx:
        a = x[i]
        a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
        out.append((f"{name}:{i}", Image.from_spacing(a)))
    return out


def file_images(paths: list[Path]) -> list:
    from medcnn.io import read_image

    return [(str(p), read_image(p)) for p in paths]


def input_sets(model: str, data: Path) -> dict[str, tuple[str, list]]:
    """{set name: (kind, [(name, Image)])} shown to one model."""
    drive = sorted((data / "drive").glob("*/images/*"))
    mr = sorted((data / "dicom_mr_series_tcia_pgbm005").glob("*.dcm"))
    return {model: ("in-distribution", medmnist_images(model, data)),
            NEAR[model]: ("near", medmnist_images(NEAR[model], data)),
            "TCIA MR DICOM": ("far", file_images(mr)),
            "DRIVE fundus photos": ("far", file_images(drive)),
            "bloodmnist": ("far", medmnist_images("bloodmnist", data))}


def train_model(name: str, out: Path, data: Path, sets: list[str]) -> Path:
    """The default-plan classifier of ``name`` (reused when OUT holds a finished run of the same plan:
    the check is what this bench measures), with its domain statistics fitted now by this code."""
    from medcnn.data.classification import load_classification
    from medcnn.plan import Plan
    from medcnn.planning import default_plan
    from medcnn.tasks import load_model, train
    from medcnn.tasks.classify.evaluate import fit_run_domain

    run = out / name
    ds = load_classification(str(data / "medmnist" / f"{name}.npz"))
    plan = default_plan(ds, str(data / "medmnist" / f"{name}.npz")).override(sets)
    done = (run / "run.json").is_file() and "finished" in json.loads((run / "run.json").read_text())
    if not (done and Plan.load(run / "plan.yaml").to_dict() == plan.to_dict()):
        train(plan, ds, run, overwrite=True, progress=False)
    fit_run_domain(load_model(run), ds, "best")
    return run


def measure(run: Path, model: str, data: Path) -> list[dict]:
    from medcnn.tasks import load_model

    pred = load_model(run)
    rows = []
    for set_name, (kind, images) in input_sets(model, data).items():
        verdicts = [pred.domain_verdict(img, pred.preprocess(name, img))["verdict"] for name, img in images]
        n, flagged = len(verdicts), sum(v != "in-domain" for v in verdicts)
        rows.append({"model": model, "inputs": set_name, "kind": kind, "n": n, "flagged": flagged,
                     "flagged_share": round(flagged / n, 4), "flagged_ci95": wilson(flagged, n),
                     "foreign": sum(v == "foreign" for v in verdicts), "unusual": sum(v == "unusual" for v in verdicts)})
        print(f"{model:15s} <- {set_name:22s} {kind:16s} flagged {flagged}/{n} ({flagged / n:.1%})", flush=True)
    return rows


def table(records: list[dict]) -> str:
    rec = records[0]
    lines = ["| model | inputs | kind | images | flagged (95 % CI) | foreign / unusual |", "|---|---|---|---|---|---|"]
    for r in rec["rows"]:
        what = "false alarms" if r["kind"] == "in-distribution" else "caught"
        lo, hi = r["flagged_ci95"]
        lines.append(f"| {r['model']} | {r['inputs']} | {r['kind']} | {r['n']} | {what} {r['flagged_share']:.1%} "
                     f"({lo:.1%}–{hi:.1%}) | {r['foreign']} / {r['unusual']} |")
    lines += ["", f"Commit `{rec['commit']}`, command `{rec['command']}`, {rec['date']}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap, "domain")
    args = ap.parse_args()
    root = os.environ.get("MEDCNN_DATA")
    if not root:
        sys.exit("set MEDCNN_DATA to the data folder")
    data = Path(root)
    meta = common.run_meta(SCRIPT, args.sets)  # the code as it was when the bench started
    rows = []
    for model in MODELS:
        run = train_model(model, args.out, data, args.sets)
        rows += measure(run, model, data)
    rec = {"dataset": "domain", **meta, "rows": rows}
    common.update_results(args.results, [rec], ["domain"])
    common.update_readme(args.readme, START, END, table([rec]))
    print(table([rec]))


if __name__ == "__main__":
    main()
