"""Build the model zoo (src/medcnn/zoo/models/) from benchmark runs: ``make zoo``.

For each entry: the source run is the default plan of its dataset, seed 0, trained by this script
(``medcnn train DATASET``; or an existing run given with ``--source NAME=RUN``). The source is
evaluated on its test split (or, with ``test_data``, on that data set of the data root); then it is
packed (``medcnn.zoo.pack``: one network, int8 kernels), the packed model is evaluated (its
temperature, domain statistics and post-processing chosen again on validation), and the entry is
written with its model card only when the packed model's test metric lies inside the source's 95 %
interval; where int8 falls outside, float16 is tried (if it fits the size limits). Every try is in
the record (``tried``).

    python bench/zoo.py                                  # every entry, training its source
    python bench/zoo.py --entries breastmnist-classifier --source breastmnist-classifier=runs/x
    python bench/zoo.py --entries breastmnist-classifier --source breastmnist-classifier=shipped   # repack

Writes src/medcnn/zoo/models/<name>/ (plan, checkpoint, calibration, domain statistics, card.json)
and bench/results/zoo.json (one record per entry: the source's and the packed model's test metrics).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
SCRIPT = "bench/zoo.py"
ZOO = ROOT / "src" / "medcnn" / "zoo" / "models"
MAX_FILE_MB, MAX_ZOO_MB = 10, 50
SHIPPED_SOURCE = "shipped"
"""``--source NAME=shipped``: pack the entry the zoo ships again (its card keeps the original run's numbers)."""
START, END = "<!-- bench-zoo:start -->", "<!-- bench-zoo:end -->"

ENTRIES = {
    "breastmnist-classifier": {
        "task": "classify", "dataset": "breastmnist", "metric": "auc",
        "data": {"name": "BreastMNIST (MedMNIST v2)", "licence": "CC BY 4.0",
                 "source": "Al-Dhabyani et al., Data in Brief 2020, via MedMNIST v2 (Yang et al., Sci. Data 2023)",
                 "images": "breast ultrasound, 28×28 grey"},
        "intended_use": "research on breast-ultrasound classification (benign or normal vs malignant) at 28×28; "
                        "a starting point for fine-tuning on your own ultrasound images",
        "failure_modes": ["trained on 546 images of one public set: other scanners, sizes and populations will "
                          "score lower", "images are downsampled to 28×28: small lesions lose their detail",
                          "inputs unlike breast ultrasound are flagged (domain check), not refused, when they "
                          "share its size and channels"]},
    "pneumoniamnist-classifier": {
        "task": "classify", "dataset": "pneumoniamnist", "metric": "auc",
        "data": {"name": "PneumoniaMNIST (MedMNIST v2)", "licence": "CC BY 4.0",
                 "source": "Kermany et al., Cell 2018, via MedMNIST v2 (Yang et al., Sci. Data 2023)",
                 "images": "paediatric chest X-ray, 28×28 grey"},
        "intended_use": "research on pneumonia vs normal in paediatric chest X-rays at 28×28",
        "failure_modes": ["paediatric patients of one centre: adult chest X-rays are out of its training "
                          "distribution", "28×28 input: a screening-level view, not a diagnostic one",
                          "the test split's patients differ in pneumonia prevalence (62 %) from training (74 %)"]},
    "bloodmnist-classifier": {
        "task": "classify", "dataset": "bloodmnist", "metric": "acc", "check_cases": 32,
        "data": {"name": "BloodMNIST (MedMNIST v2)", "licence": "CC BY 4.0",
                 "source": "Acevedo et al., Data in Brief 2020, via MedMNIST v2 (Yang et al., Sci. Data 2023)",
                 "images": "peripheral blood-cell microscopy, 28×28 colour, 8 cell types"},
        "intended_use": "research on blood-cell type classification (8 classes) in stained smear images at 28×28",
        "failure_modes": ["one hospital's analyser and staining: other stains and microscopes shift the colours",
                          "28×28 input: cells are told apart by shape and colour, not fine texture",
                          "healthy donors only: abnormal or immature cells outside the 8 classes get one of them"]},
    "organamnist-classifier": {
        "task": "classify", "dataset": "organamnist", "metric": "acc", "check_cases": 32,
        "data": {"name": "OrganAMNIST (MedMNIST v2)", "licence": "CC BY 4.0",
                 "source": "LiTS (Bilic et al. 2019) axial CT slices via MedMNIST v2 (Yang et al., Sci. Data 2023)",
                 "images": "abdominal CT, axial, 28×28 grey, 11 organs"},
        "intended_use": "research on organ recognition in axial abdominal CT crops at 28×28",
        "failure_modes": ["axial slices of liver-tumour CT studies: other planes and body regions are outside it",
                          "left and right organs (kidneys, femurs) are told apart by position: do not mirror inputs",
                          "the crops are centred on one organ: a whole slice is not a valid input"]},
    "hippocampus-segmenter": {
        "task": "segment", "dataset": "msd-hippocampus", "metric": "dice_mean",
        "data": {"name": "MSD Task04 Hippocampus", "licence": "CC BY-SA 4.0",
                 "source": "Medical Segmentation Decathlon (Simpson et al. 2019; Antonelli et al. 2022)",
                 "images": "T1-weighted MR crops around the hippocampus, 1 mm"},
        "intended_use": "research on hippocampus (anterior / posterior) segmentation in T1 MR crops like MSD Task04's",
        "failure_modes": ["trained on crops around the hippocampus: whole-brain scans must be cropped first",
                          "one public set of adults, healthy or with a psychotic disorder",
                          "anterior and posterior are told apart by position: do not mirror its inputs"]},
    "drive-vessel-segmenter": {
        "task": "segment", "dataset": "drive", "metric": "dice_mean", "check_cases": 4,
        "data": {"name": "DRIVE", "licence": "research use (cite Staal et al., IEEE TMI 2004)",
                 "source": "Staal et al., IEEE TMI 2004", "images": "colour fundus photographs, 565×584"},
        "intended_use": "research on retinal vessel segmentation in colour fundus photographs",
        "failure_modes": ["20 training photographs of one screening programme and camera",
                          "thin capillaries are the vessels most often missed"]},
    "mr-denoiser": {
        "task": "enhance", "dataset": "lgg_mri_segmentation_112", "metric": "psnr",
        "data": {"name": "LGG brain MR (TCGA-LGG via Buda et al. 2019), 3 sequences", "licence":
                 "TCIA TCGA-LGG; the release is usually cited as CC BY-NC-SA 4.0",
                 "source": "Buda et al., Computers in Biology and Medicine 2019; The Cancer Imaging Archive",
                 "images": "pre-contrast, FLAIR and post-contrast brain MR slices, 8-bit, 112×112 (converted)"},
        "intended_use": "research on denoising brain MR slices (Gaussian noise, sigma about 25/255 of the "
                        "image's intensity range); each image is scaled by its own percentiles",
        "failure_modes": ["trained on brain MR of one public collection at 112×112: other anatomy, sizes and "
                          "contrasts restore less well; on an unseen 12-bit 320×260 MR series it beats BM3D by "
                          "only {psnr_minus_bm3d:.2f} dB (bench/enhance.py, {case})",
                          "a noise level far above 25/255 is warned about, not removed",
                          "denoising can erase fine structures a radiologist needs: compare with the input"],
        # the bench record of the case the entry is packed from, on the unseen TCIA series
        "failure_record": ("enhance", {"case": "mr-lgg-gaussian-natural", "method": "medcnn",
                                       "test_set": "TCIA pgbm005 series, unseen scan (24 slices)"})},
    # the applications' models (bench/applications.py): packed from one cross-validation fold's run (the
    # variant validation chose), scored on that fold's test cases (the run's split.json)
    "brain-tumour-segmenter": {
        "task": "segment", "dataset": "lgg_mri_segmentation_112", "metric": "dice_mean", "check_cases": 4,
        "data": {"name": "LGG brain MR (TCGA-LGG via Buda et al. 2019), 110 patients, 3 sequences", "licence":
                 "TCIA TCGA-LGG; the release is usually cited as CC BY-NC-SA 4.0",
                 "source": "Buda et al., Computers in Biology and Medicine 2019; The Cancer Imaging Archive",
                 "images": "pre-contrast, FLAIR and post-contrast brain MR, 8-bit slices at 112×112 (converted), "
                           "spacing unknown"},
        "intended_use": "research on FLAIR-abnormality (lower-grade glioma) segmentation from three MR sequences "
                        "given as one file each, in the order pre-contrast, FLAIR, post-contrast",
        "failure_modes": ["trained on one public collection converted to 8-bit 112×112 slices: scans at other "
                          "resolutions or bit depths should be brought to that form first",
                          "the release gives no spacing, so its volumes are voxel counts, not mm³",
                          "every training patient has a tumour: scans without one were never seen",
                          "patients whose missing sequences were replaced by a FLAIR copy score lower (Dice "
                          "{dice_flair_copies:.3f} against {dice_others:.3f} for the others in 5-fold "
                          "cross-validation, bench/applications.py)",
                          "FLAIR abnormality is not the enhancing tumour core"],
        "failure_record": ("applications", {"dataset": "lgg", "role": "chosen on validation"})},
    "melanoma-classifier": {
        "task": "classify", "dataset": "isic2017_melanoma/ISIC-2017_Training_Classes.csv", "metric": "auc",
        "test_data": "isic2017_melanoma/ISIC-2017_Validation_Classes.csv", "test_split": "all",
        "data": {"name": "ISIC 2017 part 3 (melanoma)", "licence": "ISIC archive terms (mostly CC BY-NC)",
                 "source": "Codella et al., ISBI 2018 (ISIC 2017 challenge)",
                 "images": "dermoscopic photographs, resized to 128×128 (converted)"},
        "intended_use": "research on melanoma vs other lesions in dermoscopic photographs at 128×128; tested on "
                        "the challenge's official 150-image validation set (30 melanomas: a wide interval)",
        "failure_modes": ["dermoscopy only: clinical (non-dermoscopic) photographs are outside it",
                          "2,000 training images of a public archive, mostly light skin",
                          "a lesion must fill most of the image, as in the archive"]},
    "exudate-segmenter": {
        "task": "segment", "dataset": "idrid_hard_exudates", "metric": "dice_mean", "check_cases": 1,
        "data": {"name": "IDRiD hard exudates (images 01-20)", "licence": "CC BY 4.0",
                 "source": "Porwal et al., Data 3:25, 2018", "images": "colour fundus photographs, 4288×2848"},
        "intended_use": "research on hard-exudate segmentation in full-resolution colour fundus photographs",
        "failure_modes": ["15 training photographs of one camera and programme",
                          "tiny, scattered lesions: per-image scores vary widely, and small exudates are missed first",
                          "the lesion masks were stored as JPEG in the copy it learned from, binarised"]},
}
RESEARCH_ONLY = "Research use only. Not a medical device; not for diagnosis or treatment decisions."


def medcnn(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "medcnn", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"medcnn {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def zoo_bytes(without: str | None = None) -> int:
    """What the zoo's files take, leaving out the entry ``without`` (the one being rebuilt)."""
    skip = ZOO / without if without else None
    return sum(p.stat().st_size for p in ZOO.rglob("*") if p.is_file() and skip not in p.parents)


def test_source(spec: dict) -> dict:
    """Where an entry is tested when not on its run's test split: ``{"data": file or folder of the data
    root, "split": ...}`` (a challenge's official validation images, all of them unless said), else {}."""
    return {"data": spec["test_data"], "split": spec.get("test_split", "all")} if spec.get("test_data") else {}


def test_args(spec: dict) -> list[str]:
    """How an entry's test metric is measured: the run's test split, or another data set of the data root."""
    source = test_source(spec)
    if not source:
        return ["--split", "test"]
    from medcnn.data.fetch import data_root

    return ["--data", str(data_root() / source["data"]), "--split", source["split"]]


def evaluate(run: Path, spec: dict, *args: str) -> dict:
    text = medcnn("evaluate", str(run), *(args or test_args(spec)), "--json")
    return json.loads(text[text.index("{"):])


def summary(report: dict, metric: str) -> dict:
    keep = ("n", "n_cases", "n_images", "auc", "acc", "ece", "brier", "dice_mean", "psnr", "ssim")
    out = {k: round(float(report[k]), 4) for k in keep if isinstance(report.get(k), (int, float))}
    out.update({f"{k}_ci95": [round(float(v), 4) for v in report[f"{k}_ci95"]] for k in keep if report.get(f"{k}_ci95")})
    if report.get("fov"):  # pixel scores inside the field of view (fundus photographs): the challenge metric
        fov = report["fov"]
        out.update(pixel_aupr=round(float(fov["aupr"]), 4), aupr_per_image_mean=round(float(fov["aupr_per_image_mean"]), 4),
                   aupr_per_image_ci95=[round(float(v), 4) for v in fov["aupr_per_image_ci95"]])
    if report.get("domain"):  # the share of its own test images the input-domain check calls unusual
        out["unusual_share"] = report["domain"]["unusual_share"]
    out["metric"] = metric
    return out


UNUSUAL_NOTE = 0.02
"""A card names the domain check's false alarms as a failure mode above this share of its test images."""


def failure_modes(spec: dict, packed: dict) -> list[str]:
    """The entry's known failure modes (their numbers filled from the bench record named by
    ``failure_record``: (bench, the fields that pick the record)), and the domain check's false alarms
    where they are frequent."""
    modes = spec["failure_modes"]
    if spec.get("failure_record"):
        bench, where = spec["failure_record"]
        rec = next(r for r in json.loads((ROOT / "bench" / "results" / f"{bench}.json").read_text())
                   if all(r.get(k) == v for k, v in where.items()))
        modes = [m.format(**rec) for m in modes]
    share = packed.get("unusual_share")
    extra = [f"the input-domain check calls {share:.1%} of its own test images unusual (a warning; the class "
             "is still given): expect warnings on ordinary inputs"] if share and share > UNUSUAL_NOTE else []
    return [*modes, *extra]


def check_cases(run: Path, spec: dict) -> dict:
    """What the zoo test reproduces for an entry whose whole test set takes minutes to score, {} for
    the others: a segmenter's per-case Dice of its first ``spec["check_cases"]`` test cases
    (``{"check": {"cases": {case: {label_dice: value}}}}``, ``evaluate --case``); a classifier's
    probabilities of its first ``check_cases`` test images (``{"check": {"split", "first",
    "probabilities"}}``), read from the evaluation's ``test_probs.npy``: the test predicts them in
    the same batch of the first CHECK_BATCH images as ``evaluate`` did."""
    n = spec.get("check_cases")
    if not n:
        return {}
    if spec["task"] == "classify":
        import numpy as np

        probs = np.load(run / "eval" / "test_probs.npy")[:n]
        return {"check": {"split": "test", "first": int(n), "batch": CHECK_BATCH,
                          "probabilities": [[round(float(v), 6) for v in row] for row in probs]}}
    with open(run / "eval" / "test_cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return {"check": {"cases": {r["case"]: {k: float(v) for k, v in r.items() if k.endswith("_dice")} for r in rows}}}


CHECK_BATCH = 256
"""``predict_logits``'s batch size: a classifier's check images are predicted in this same first batch."""


def build(name: str, spec: dict, source: Path | None, out: Path, meta: dict, source_commit: str | None = None) -> dict:
    import torch

    from medcnn.zoo import sha256
    from medcnn.zoo.pack import pack_run, shipped_files

    m = spec["metric"]
    shipped = None
    if source is not None and str(source) == SHIPPED_SOURCE:  # pack the shipped entry again (e.g. as int8)
        from medcnn import zoo

        shipped = zoo.card(name)
        source = zoo.resolve(zoo.PREFIX + name)
    elif source is None:
        source = out / f"{name}-source"
        if not (source / "run.json").is_file() or "finished" not in json.loads((source / "run.json").read_text()):
            medcnn("train", spec["dataset"], "--out", str(source), "--seed", "0", "--overwrite", "--no-progress")
    # the run the entry stands for: its test metric and interval are the bar the packed network must meet
    original = ({k: v for k, v in shipped["original"].items() if k != "ensemble"} if shipped
                else summary(evaluate(source, spec), m))
    lo, hi = original[f"{m}_ci95"]
    # tested on other data: the packed run keeps its own data until its temperature and domain statistics
    # are fitted on its own validation split; the shipped plan then names the data-root copy
    own_data = None if spec.get("test_data") else spec["dataset"]
    tried = []
    for dtype in (torch.int8, torch.float16):  # the smaller first; float16 where int8 misses the interval
        label = str(dtype).removeprefix("torch.")
        folder = pack_run(source, out / f"{name}-{label}", data=own_data, dtype=dtype)
        ckpt_bytes = (folder / "checkpoints" / "best.ckpt").stat().st_size
        if dtype != torch.int8 and (ckpt_bytes > MAX_FILE_MB * 2**20 or
                                    zoo_bytes(without=name) + ckpt_bytes > MAX_ZOO_MB * 2**20):
            break  # float16 does not fit (the DRIVE U-Net: 10.3 M weights, 20.6 MB): int8's result stands
        if own_data is None:
            evaluate(folder, spec, "--split", "val")
        packed_dir, packed = folder, summary(evaluate(folder, spec), m)
        tried.append({"dtype": label, m: packed[m], "checkpoint_bytes": ckpt_bytes})
        if lo <= packed[m] <= hi:
            break
    dtype = tried[-1]["dtype"]
    inside = lo <= packed[m] <= hi
    if shipped:
        src_commit, src_command = shipped["source"]["commit"], shipped["source"]["command"]
    else:
        # the commit the source was trained at: a bench's marker in the run folder, or the per-seed record
        # the classification bench keeps beside it (OUT/<dataset>/seed<k>.json), else this build's
        markers = [source / "bench.json", source.parent / f"{source.name}.json"]
        src_commit = source_commit or next((json.loads(f.read_text()).get("commit") for f in markers if f.is_file()),
                                           None) or meta["commit"]
        src_command = json.loads((source / "run.json").read_text()).get("command")
    rec = {"name": name, "source_run": f"the shipped entry (built from {shipped['source']['command']})" if shipped
           else str(source), "source_commit": src_commit, "source_command": src_command,
           "original": original, "packed": packed, "tried": tried, "inside_original_interval": inside, **meta}
    if not inside:
        print(f"{name}: packed test {m} {packed[m]:.4f} is outside the source's interval [{lo:.4f}, {hi:.4f}]; "
              "entry not written", file=sys.stderr)
        return rec
    entry = ZOO / name
    shutil.rmtree(entry, ignore_errors=True)
    files = shipped_files(packed_dir)
    for f in files:
        (entry / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(packed_dir / f, entry / f)
    if own_data is None:
        import dataclasses

        from medcnn.plan import Plan

        dataclasses.replace(Plan.load(entry / "plan.yaml"), data=spec["dataset"]).save(entry / "plan.yaml")
    sizes = {f: (entry / f).stat().st_size for f in files}
    too_big = [f for f, b in sizes.items() if b > MAX_FILE_MB * 2**20]
    if too_big:
        raise SystemExit(f"{name}: {too_big} over {MAX_FILE_MB} MB")
    card = {"name": name, "task": spec["task"], "data": spec["data"], "intended_use": spec["intended_use"],
            "not_for": RESEARCH_ONLY, "failure_modes": failure_modes(spec, packed),
            "test": {"metric": m, "value": packed[m], "ci95": packed[f"{m}_ci95"], **packed,
                     **test_source(spec), **check_cases(packed_dir, spec)},
            "original": {"ensemble": shipped["original"]["ensemble"] if shipped else
                         json.loads((packed_dir / "run.json").read_text())["packed_from"]["ensemble"], **original},
            "packing": "ensemble member 0 only, " + ("float16 tensors" if dtype == "float16" else
                                                      "int8 kernels with a float16 scale per output channel, other "
                                                      "tensors float16") +
                       "; temperature, domain statistics and post-processing chosen again on validation",
            "bytes": sum(sizes.values()), "files": {f: sha256(entry / f) for f in files},
            "built_by": {"command": meta["command"], "commit": meta["commit"], "date": meta["date"]},
            "source": {"command": rec["source_command"], "commit": src_commit}}
    (entry / "card.json").write_text(card_json(card))
    return rec


_NUMBERS = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")


def card_json(card: dict) -> str:
    """The card as indented JSON with each list of numbers (an interval, a check image's
    probabilities) on one line."""
    return _NUMBERS.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                        json.dumps(card, indent=1)) + "\n"


def table(records: list[dict]) -> str:
    """The results page's zoo table: each entry's test metric as shipped beside the run it was packed from."""
    ci = lambda r, m: f" [{r[f'{m}_ci95'][0]:.4f}, {r[f'{m}_ci95'][1]:.4f}]" if r.get(f"{m}_ci95") else ""  # noqa: E731
    lines = ["| model | test metric (95 % CI), as shipped | the run it was packed from | own test images the domain "
             "check calls unusual | shipped | source commit | built at |", "|---|---|---|---|---|---|---|"]
    order = list(ENTRIES)
    for r in sorted(records, key=lambda r: order.index(r["name"]) if r["name"] in order else len(order)):
        share = r["packed"].get("unusual_share")
        m = r["original"]["metric"]
        n = next((r["packed"][k] for k in ("n", "n_cases", "n_images") if r["packed"].get(k)), 0)  # images or cases
        lines.append(f"| `{r['name']}` | {m} {r['packed'][m]:.4f}{ci(r['packed'], m)} (n = {n:.0f}) | "
                     f"{m} {r['original'][m]:.4f}{ci(r['original'], m)} | "
                     f"{'–' if share is None else f'{share:.1%}'} | "
                     f"{'yes' if r['inside_original_interval'] else 'no: outside the interval'} | "
                     f"`{r['source_commit']}` | `{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    lines += ["", "An entry ships only when its test metric lies inside the interval of the run it was packed from "
              "(one network with int8 kernels, or in float16 where int8 falls outside it). Command(s): " + "; ".join(f"`{c}`" for c in cmds) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap, "zoo")
    ap.add_argument("--entries", nargs="+", default=list(ENTRIES), choices=list(ENTRIES))
    ap.add_argument("--source", action="append", default=[],
                    help="NAME=RUN[@COMMIT]: pack this finished run instead of training (COMMIT: the one it was "
                         "trained at, when the run folder does not say)")
    args = ap.parse_args()
    sources = dict(s.split("=", 1) for s in args.source)
    commits = {name: run.rsplit("@", 1)[1] for name, run in sources.items() if "@" in run}
    sources = {name: run.rsplit("@", 1)[0] for name, run in sources.items()}
    meta = common.run_meta(SCRIPT, args.sets)
    records = []
    for name in args.entries:
        src = Path(sources[name]) if name in sources else None
        rec = build(name, ENTRIES[name], src, args.out, meta, commits.get(name))
        m = rec["original"]["metric"]
        print(f"{name}: test {m} source {rec['original'][m]:.4f} {rec['original'][f'{m}_ci95']}, packed "
              f"{rec['packed'][m]:.4f} -> {'written' if rec['inside_original_interval'] else 'NOT written'}", flush=True)
        records.append(rec)
    total = zoo_bytes()
    if total > MAX_ZOO_MB * 2**20:
        raise SystemExit(f"the zoo is {total / 2**20:.1f} MB, over {MAX_ZOO_MB} MB")
    old = json.loads(args.results.read_text()) if args.results.is_file() else []
    merged = [r for r in old if r["name"] not in {x["name"] for x in records}] + records
    common.save_record(args.results, merged)
    common.update_readme(args.readme, START, END, table(merged))


if __name__ == "__main__":
    main()
