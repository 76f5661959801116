"""Scale-out and memory figures for the README (issue #8).

ddp     PneumoniaMNIST (4,708 training images), the default classification plan, trained with 1 and
        with 2 processes (``medcnn train --devices N``: Lightning DDP, gloo on CPU) for the same
        epochs and effective batch; images/s over the epochs after the first (which includes
        start-up), and the training loss each ends with.
memory  ``medcnn predict`` of a segmentation run on volumes larger than any training image (an MSD
        Hippocampus test volume tiled n x n x n), each in its own process: peak resident memory
        (the process's own VmHWM) and seconds, so the README can state a RAM bound for sliding-window
        inference.

    make bench-scale
    .venv/bin/python bench/scale.py --parts ddp memory [--segment RUN]

Writes bench/results/scale.json and the README table between the bench-scale markers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
START, END = "<!-- bench-scale:start -->", "<!-- bench-scale:end -->"
MEDCNN = [sys.executable, "-m", "medcnn"]


def data_root() -> Path:
    return Path(os.environ.get("MEDCNN_DATA", ROOT.parent / "shared" / "data"))


def wall_seconds(cmd: list[str]) -> float:
    """Run ``cmd`` (``python -m medcnn ...``: Lightning's DDP launcher starts its other processes the
    way this one was started); its seconds. Exits on failure."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def peak_cost(args: list[str]) -> tuple[float, float]:
    """``medcnn ARGS...`` in a process of its own: (seconds, that process's peak resident MB). Exits on
    failure."""
    try:
        return common.medcnn_cost(args)
    except RuntimeError as e:
        sys.exit(f"failed: medcnn {' '.join(args)}\n{e}")


def bench_ddp(out: Path, epochs: int) -> list[dict]:
    npz = data_root() / "medmnist" / "pneumoniamnist.npz"
    rows = []
    for devices in (1, 2):
        run = out / f"pneumonia-{devices}proc"
        cmd = MEDCNN + ["train", str(npz), "--out", str(run), "--overwrite", "--epochs", str(epochs), "--no-progress",
                        "--devices", str(devices), "--set", "ensemble=1", "--set", "max_minutes=0"]
        seconds = wall_seconds(cmd)
        metrics = json.loads((run / "metrics.json").read_text())["epochs"]
        info = json.loads((run / "run.json").read_text())
        n = info["n"]["train"] + info["n"]["val"]
        later = [e["seconds"] for e in metrics[1:]]
        rows.append({"processes": devices, "threads_per_process": info["threads"], "epochs": epochs,
                     "effective_batch": info["distributed"]["effective_batch_size"],
                     "images_per_s": round(n * len(later) / sum(later), 1),
                     "epoch_seconds": round(sum(later) / len(later), 2), "wall_seconds": round(seconds, 1),
                     "final_train_loss": round(metrics[-1]["train_loss"], 4),
                     "final_val_auc": round(metrics[-1]["val_auc"], 4)})
        print(f"{devices} process(es): {rows[-1]}", flush=True)
    return rows


def tiled_volumes(folder: Path, factors: list[int]) -> list[tuple[int, Path, tuple[int, ...]]]:
    import nibabel as nib
    import numpy as np

    src = sorted((data_root() / "msd_task04_hippocampus" / "imagesTs").glob("*.nii.gz"))[0]
    img = nib.load(src)
    a = np.asarray(img.dataobj)
    out = []
    for f in factors:
        big = np.tile(a, (f, f, f))
        path = folder / f"tiled{f}.nii.gz"
        nib.save(nib.Nifti1Image(big, img.affine), path)
        out.append((f, path, big.shape))
    return out


def bench_memory(out: Path, segment_run: Path, factors: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for f, path, shape in tiled_volumes(Path(tmp), factors):
            seconds, peak = peak_cost(["predict", str(segment_run), str(path), "--out", str(out / "memory"),
                                            "--overwrite"])
            rows.append({"volume": "x".join(map(str, shape)), "voxels": int(shape[0] * shape[1] * shape[2]),
                         "tiles": f, "peak_rss_mb": round(peak), "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    return rows


def quick_segment_run(out: Path) -> Path:
    """A default-plan Hippocampus run for the memory figure: its memory does not depend on how well
    it is trained, only on the plan (patch, classes, network)."""
    run = out / "hippocampus-1epoch"
    if not (run / "checkpoints" / "best.ckpt").is_file():
        subprocess.run(MEDCNN + ["train", str(data_root() / "msd_task04_hippocampus"), "--out", str(run), "--overwrite",
                                 "--epochs", "1", "--no-progress", "--set", "max_minutes=0",
                                 "--set", "segment.patches_per_epoch=48"], check=True)
    return run


def table(rec: dict) -> str:
    lines = []
    if rec.get("ddp"):
        lines += ["| processes x threads | images/s | s per epoch | final train loss | final val AUC |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['processes']} x {r['threads_per_process']} | {r['images_per_s']} | {r['epoch_seconds']} | "
                  f"{r['final_train_loss']} | {r['final_val_auc']} |" for r in rec["ddp"]]
        lines.append("")
    if rec.get("memory"):
        lines += ["| volume (voxels) | peak RSS (MB) | seconds |", "|---|---|---|"]
        lines += [f"| {r['volume']} ({r['voxels'] / 1e6:.1f} M) | {r['peak_rss_mb']} | {r['seconds']} |"
                  for r in rec["memory"]]
        lines.append("")
    lines.append(f"<sub>`{rec['command']}` at {rec['commit']}, {rec['date']}, {rec['machine']}.</sub>")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(ap, "scale")
    ap.add_argument("--parts", nargs="+", default=["ddp", "memory"], choices=["ddp", "memory"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--segment", type=Path, default=None, help="segmentation run (default: a 1-epoch Hippocampus run)")
    ap.add_argument("--tiles", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.results.read_text()) if args.results.is_file() else {}
    rec = {**old, **common.run_meta("bench/scale.py", args.sets)}
    if "ddp" in args.parts:
        rec["ddp"] = bench_ddp(args.out, args.epochs)
    if "memory" in args.parts:
        rec["memory"] = bench_memory(args.out, args.segment or quick_segment_run(args.out), args.tiles)
    common.save_record(args.results, rec)
    common.update_readme(args.readme, START, END, table(rec))
    print(table(rec))


if __name__ == "__main__":
    main()
