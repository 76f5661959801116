"""Mutation fuzzing of medcnn's inputs: real DICOM, NIfTI, PNG and npz files, mutated, through every
reader and through ``predict``.

Seeds are real files: pydicom's bundled test files and the pydicom-data package, nibabel's test
NIfTI files, the TCIA MR series of the data mirror (single files and a 4-slice series folder), PNGs
and an npz cut from real MedMNIST images. Each execution mutates one seed (byte-level: flips,
interesting integers, deletions, duplications, truncation; or structure-aware: DICOM attributes
such as Rows/BitsAllocated/NumberOfFrames/TransferSyntax, NIfTI header dims/datatype/vox_offset/
pixdim, PNG IHDR sizes with a valid CRC (decompression bombs), npy headers in an npz) and hands the
file to a target in a worker process:

    read      medcnn.io.read_image (file or series folder)
    classify  the classification predictor (medcnn predict on a 2D classifier run)
    segment   the segmentation job (medcnn predict on a 3D segmenter run: mask, SEG, measurements)
    npz       the MedMNIST npz dataset loader (medcnn train DATA.npz)

A result is fine when the target succeeds or raises medcnn's own error type (MedcnnError: one clear
line). A finding is any other exception, a hang (no answer within ``--timeout``), a worker crash,
or a memory blow-up (worker RSS above ``--max-rss-mb``); its input is kept under ``--out``.

    python tools/fuzz.py --seconds 600 --out fuzz-out [--classify RUN] [--segment RUN]
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

INTERESTING = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 32767, 32768, 65535, 65536,
               2**31 - 1, 2**31, 2**32 - 1, -1, -2, -32768, -2**31]


# ---- seeds ----------------------------------------------------------------------------------------

@dataclass
class Seed:
    path: Path
    kind: str  # dicom | nifti | png | npz | series
    targets: tuple[str, ...]


def collect_seeds(data_root: Path | None, work: Path, max_dicom: int = 40) -> list[Seed]:
    """Real files to mutate (small ones: each execution copies and rewrites one)."""
    import numpy as np
    import pydicom
    from nibabel.testing import data_path as nib_data

    seeds: list[Seed] = []
    dcm_dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # the pydicom-data package

        dcm_dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    dicoms = sorted(f for d in dcm_dirs if d.is_dir() for f in d.rglob("*.dcm") if f.stat().st_size < 600_000)
    rng = random.Random(0)
    rng.shuffle(dicoms)
    seeds += [Seed(f, "dicom", ("read", "classify")) for f in sorted(dicoms[:max_dicom])]
    for name in ("anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii",
                 "reoriented_anat_moved.nii"):
        f = Path(nib_data) / name
        if f.is_file():
            seeds.append(Seed(f, "nifti", ("read",)))  # whole brains: a segmenter takes ~20 s on each
    if data_root is not None:
        series = data_root / "dicom_mr_series_tcia_pgbm005"
        files = sorted(series.glob("*.dcm"))
        if files:
            seeds.append(Seed(files[len(files) // 2], "dicom", ("read", "classify")))
            folder = work / "seed-series"
            folder.mkdir(parents=True, exist_ok=True)
            for f in files[10:14]:
                shutil.copy(f, folder / f.name)
            seeds.append(Seed(folder, "series", ("read", "segment")))
        hippo = sorted((data_root / "msd_task04_hippocampus" / "imagesTr").glob("*.nii.gz"))
        if hippo:
            seeds.append(Seed(hippo[0], "nifti", ("read", "segment")))
        breast = data_root / "medmnist" / "breastmnist.npz"
        if breast.is_file():
            from PIL import Image

            with np.load(breast) as z:
                parts = {k: z[k][:6] for k in z.files}
            small = work / "seed-breast.npz"
            np.savez_compressed(small, **parts)
            seeds.append(Seed(small, "npz", ("npz",)))
            for i, (name, mode) in enumerate((("gray", "L"), ("rgb", "RGB"))):
                png = work / f"seed-{name}.png"
                Image.fromarray(parts["train_images"][i]).convert(mode).save(png)
                seeds.append(Seed(png, "png", ("read", "classify")))
    return seeds


# ---- mutators -------------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.choice(["flip", "interesting", "delete", "duplicate", "truncate", "insert", "zero-run"])
    n = len(b)
    if n == 0:
        return bytes(rng.randbytes(64)), "random"
    i = rng.randrange(n)
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(n)
            b[j] ^= 1 << rng.randrange(8)
    elif op == "interesting":
        v = rng.choice(INTERESTING)
        width, fmt = rng.choice([(2, "H"), (4, "I")])
        b[i:i + width] = struct.pack(rng.choice("<>") + fmt, v % 2 ** (8 * width))  # two's complement
    elif op == "delete":
        del b[i:i + rng.randint(1, max(1, n // 8))]
    elif op == "duplicate":
        j = rng.randint(1, max(1, n // 8))
        b[i:i] = b[i:i + j]
    elif op == "truncate":
        b = b[:i]
    elif op == "insert":
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    else:
        b[i:i + rng.randint(1, 256)] = bytes(min(256, n - i))
    return bytes(b), op


DICOM_FIELDS = {
    "Rows": [0, 1, 65535, 2**16 - 1], "Columns": [0, 1, 65535], "BitsAllocated": [0, 1, 7, 12, 24, 64],
    "BitsStored": [0, 1, 17, 33], "HighBit": [0, 40], "SamplesPerPixel": [0, 2, 4, 65535],
    "NumberOfFrames": ["0", "-1", "65535", "2147483647", "x"], "PixelRepresentation": [2, 65535],
    "PhotometricInterpretation": ["", "YBR_FULL", "PALETTE COLOR", "BOGUS"], "PlanarConfiguration": [1, 7],
    "RescaleSlope": ["0", "nan", "-inf", "1e308"], "RescaleIntercept": ["nan", "1e308"],
    "PixelSpacing": [["0", "0"], ["nan", "1"], ["-1", "-1"], ["1e308", "1"]], "SliceThickness": ["0", "nan"],
    "ImagePositionPatient": [["nan", "0", "0"], ["1e308", "0", "0"], ["0"]],
    "ImageOrientationPatient": [["0"] * 6, ["nan"] * 6, ["1", "0", "0"]],
    "WindowCenter": ["nan", "1e308"], "WindowWidth": ["0", "-5", "nan"],
}
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50",
                     "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.3.4"]


def mutate_dicom(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        what = rng.choice(["field", "field", "delete", "pixels", "syntax"])
        if what == "field":
            kw = rng.choice(sorted(DICOM_FIELDS))
            setattr(ds, kw, rng.choice(DICOM_FIELDS[kw]))
            what = f"{kw}"
        elif what == "delete":
            kw = rng.choice(sorted(DICOM_FIELDS) + ["PixelData"])
            if kw in ds:
                delattr(ds, kw)
            what = f"del {kw}"
        elif what == "pixels" and "PixelData" in ds:
            px = ds.PixelData
            ds.PixelData = px[: rng.randrange(len(px) + 1)] if rng.random() < 0.5 else px + px
        elif what == "syntax" and getattr(ds, "file_meta", None) is not None:
            ds.file_meta.TransferSyntaxUID = rng.choice(TRANSFER_SYNTAXES)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue(), f"dicom:{what}"
    except Exception:  # noqa: BLE001 - a seed pydicom cannot rewrite: mutate its bytes instead
        return mutate_bytes(data, rng)


NIFTI1_FIELDS = [(40, "<8h"), (70, "<h"), (72, "<h"), (76, "<8f"), (108, "<f"), (112, "<f"), (116, "<f"),
                 (252, "<h"), (254, "<h"), (256, "<6f"), (280, "<12f")]


def mutate_nifti(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    packed = data[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(data) if packed else data)
    if len(raw) < 348 or struct.unpack("<i", raw[:4])[0] != 348:
        out, op = mutate_bytes(bytes(raw), rng)
    else:
        off, fmt = rng.choice(NIFTI1_FIELDS)
        values = list(struct.unpack_from(fmt, raw, off))
        k = rng.randrange(len(values))
        if fmt[-1] == "h":
            values[k] = rng.choice([0, -1, 1, 7, 8, 32767, -32768, 2, 16, 64, 128, 1024, 2048])
        else:
            values[k] = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30, -1e30, 1e-30, 2.0**31])
        struct.pack_into(fmt, raw, off, *values)
        out, op = bytes(raw), f"nifti:{off}[{k}]"
    return (gzip.compress(out, 1) if packed else out), op


def mutate_png(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 33 or rng.random() < 0.4:
        return mutate_bytes(data, rng)
    b = bytearray(data)
    what = rng.choice(["width", "height", "both", "depth", "colour"])
    if what in ("width", "both"):
        struct.pack_into(">I", b, 16, rng.choice([0, 1, 65535, 100_000, 2**31 - 1]))
    if what in ("height", "both"):
        struct.pack_into(">I", b, 20, rng.choice([0, 1, 65535, 100_000, 2**31 - 1]))
    if what == "depth":
        b[24] = rng.choice([0, 3, 16, 255])
    if what == "colour":
        b[25] = rng.choice([1, 3, 5, 6, 255])
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)  # a valid CRC: the decoder believes it
    return bytes(b), f"png:ihdr-{what}"


def mutate_npz(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    try:
        zin = zipfile.ZipFile(io.BytesIO(data))
        names = zin.namelist()
        victim = rng.choice(names)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
            for n in names:
                blob = zin.read(n)
                if n == victim:
                    if rng.random() < 0.5 and blob[:6] == b"\x93NUMPY":
                        hlen = struct.unpack("<H", blob[8:10])[0]
                        header = blob[10:10 + hlen].decode("latin-1")
                        header = rng.choice([
                            header.replace("(", "(99999999, ", 1), header.replace("|u1", "<f8"),
                            header.replace("|u1", "|O"), header.replace("False", "True"),
                            header.replace("(", "(0, ", 1), header.replace("'shape': (", "'shape': (-1, ")])
                        header = header.ljust(hlen)[:hlen] if len(header) <= hlen else header
                        blob = blob[:8] + struct.pack("<H", len(header)) + header.encode("latin-1") + blob[10 + hlen:]
                        op = "npz:header"
                    else:
                        blob, op = mutate_bytes(blob, rng)
                        op = f"npz:{op}"
                zout.writestr(n, blob)
        return out.getvalue(), op
    except Exception:  # noqa: BLE001
        return mutate_bytes(data, rng)


STRUCTURED = {"dicom": mutate_dicom, "series": mutate_dicom, "nifti": mutate_nifti, "png": mutate_png, "npz": mutate_npz}


def make_case(seed: Seed, rng: random.Random, folder: Path) -> tuple[Path, str]:
    """Write one mutated copy of ``seed`` under ``folder``; (path, mutation)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if seed.kind == "series":
        dest = folder / "series"
        shutil.copytree(seed.path, dest)
        victim = rng.choice(sorted(dest.iterdir()))
        blob, op = (STRUCTURED["series"] if rng.random() < 0.6 else mutate_bytes)(victim.read_bytes(), rng)
        victim.write_bytes(blob)
        return dest, f"series {victim.name} {op}"
    data = seed.path.read_bytes()
    blob, op = (STRUCTURED[seed.kind] if rng.random() < 0.6 else mutate_bytes)(data, rng)
    for _ in range(rng.choice([0, 0, 1, 2])):  # stacked mutations
        blob, more = mutate_bytes(blob, rng)
        op += f"+{more}"
    name = seed.path.name
    if seed.kind != "npz" and rng.random() < 0.15:
        name = "input" + rng.choice(["", ".bin", ".1"])  # no telling suffix: content sniffing decides
    dest = folder / name
    dest.write_bytes(blob)
    return dest, op


# ---- the worker -----------------------------------------------------------------------------------

def _quiet() -> None:
    """Readers' warnings about broken files are expected by the thousand here."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def _worker(conn, runs: dict[str, str], threads: int) -> None:
    import torch

    _quiet()

    torch.set_num_threads(threads)
    from medcnn.errors import MedcnnError

    jobs = {}
    if runs.get("classify"):
        from medcnn.tasks.jobs import predict_job

        jobs["classify"] = predict_job(Path(runs["classify"]), "best", "torch", None, True, None)
    if runs.get("segment"):
        from medcnn.tasks.jobs import predict_job

        jobs["segment"] = predict_job(Path(runs["segment"]), "best", "torch", None, True, None)
        jobs["segment"].seg.plan.segment.tta_flips = False  # 8x fewer windows: more executions per second
    conn.send(("ready", ""))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        target, path = msg
        path = Path(path)
        try:
            if target == "read":
                from medcnn.io import read_image

                read_image(path)
            elif target == "npz":
                from medcnn.data.classification import load_classification

                load_classification(str(path))
            elif target in jobs:
                out = path.parent / "out"
                jobs[target].one(path, out) if target == "segment" else jobs[target].one(path)
            elif target.startswith("selftest:"):  # planted failures: the harness must report each
                _selftest(target.split(":", 1)[1])
            conn.send(("ok", ""))
        except MedcnnError as e:
            text = str(e)
            conn.send(("clean", text) if "\n" not in text else ("finding", f"multi-line error: {text[:300]}"))
        except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
            conn.send(("finding", f"{type(e).__name__}: {e}"[:500] + "\n" + traceback.format_exc()[-3000:]))


def _selftest(kind: str) -> None:
    if kind == "raise":
        raise ValueError("planted bug")
    if kind == "hang":
        time.sleep(3600)
    if kind == "memory":
        hog = []
        while True:
            hog.append(bytearray(64 * 2**20))  # touched pages: resident memory grows
            time.sleep(0.005)
    if kind == "crash":
        os._exit(3)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Worker:
    def __init__(self, runs: dict[str, str], threads: int):
        self.runs, self.threads = runs, threads
        self.start()

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.runs, self.threads), daemon=True)
        self.proc.start()
        if not self.conn.poll(300):
            raise RuntimeError("fuzz worker did not start")
        self.conn.recv()
        self.base_rss = _rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)

    def run(self, target: str, path: Path, timeout: float, max_rss_mb: float) -> tuple[str, str]:
        self.conn.send((target, str(path)))
        t0 = time.monotonic()
        while True:
            if self.conn.poll(0.02):
                try:
                    return self.conn.recv()
                except EOFError:
                    break
            if not self.proc.is_alive():
                break
            rss = _rss_mb(self.proc.pid)
            if rss > max_rss_mb:
                self.stop()
                self.start()
                return "finding", f"memory blow-up: worker RSS {rss:.0f} MB > {max_rss_mb:.0f} MB"
            if time.monotonic() - t0 > timeout:
                self.stop()
                self.start()
                return "finding", f"hang: no answer in {timeout:.0f} s"
        self.proc.join(10)  # reaped: its exit code is known
        code = self.proc.exitcode
        self.stop()
        self.start()
        return "finding", f"worker died (exit code {code})"


# ---- the campaign ---------------------------------------------------------------------------------

@dataclass
class Report:
    seed: int
    executions: int = 0
    seconds: float = 0.0
    by_target: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"seed": self.seed, "executions": self.executions, "seconds": round(self.seconds, 1),
                "executions_per_s": round(self.executions / max(self.seconds, 1e-9), 2),
                "by_target": self.by_target, "findings": self.findings}


def fuzz(seeds: list[Seed], runs: dict[str, str], *, seconds: float = 60, max_execs: int | None = None,
         seed: int = 0, out: Path | None = None, timeout: float = 30, max_rss_mb: float = 4096,
         threads: int = 1, log=print) -> Report:
    _quiet()
    rng = random.Random(seed)
    targets = {"read", "npz"} | {t for t in ("classify", "segment") if runs.get(t)}
    usable = [(s, t) for s in seeds for t in s.targets if t in targets]
    if not usable:
        raise SystemExit("no seeds / targets to fuzz")
    report = Report(seed=seed)
    work = Path(tempfile.mkdtemp(prefix="medcnn-fuzz-"))
    worker = Worker(runs, threads)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds and (max_execs is None or report.executions < max_execs):
            s, target = rng.choice(usable)
            case_dir = work / "case"
            path, op = make_case(s, rng, case_dir)
            status, detail = worker.run(target, path, timeout, max_rss_mb)
            report.executions += 1
            counts = report.by_target.setdefault(target, {"ok": 0, "clean_error": 0, "finding": 0})
            counts[{"ok": "ok", "clean": "clean_error"}.get(status, "finding")] += 1
            if status == "finding":
                kept = None
                if out is not None:
                    kept = out / "findings" / f"{len(report.findings):04d}-{target}-{path.name}"
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if path.is_dir() else shutil.copy)(path, kept)
                report.findings.append({"target": target, "seed_file": s.path.name, "mutation": op,
                                        "problem": detail, "input": str(kept) if kept else None})
                log(f"FINDING {target} {s.path.name} [{op}]: {detail.splitlines()[0]}")
    finally:
        worker.conn.send(None) if worker.proc.is_alive() else None
        worker.stop()
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 300)))
    ap.add_argument("--max-execs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"))
    ap.add_argument("--classify", help="classification run folder (default: train a 1-epoch BreastMNIST run)")
    ap.add_argument("--segment", help="segmentation run folder (default: train a short Hippocampus run)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--max-rss-mb", type=float, default=4096.0)
    args = ap.parse_args(argv)
    data = Path(os.environ["MEDCNN_DATA"]) if os.environ.get("MEDCNN_DATA") else None
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "findings", ignore_errors=True)  # this campaign's findings only
    runs = {"classify": args.classify, "segment": args.segment}
    for task in ("classify", "segment"):
        if runs[task] is None and data is not None:
            runs[task] = str(_quick_run(task, data, args.out / "runs"))
    seeds = collect_seeds(data, args.out / "seeds")
    print(f"fuzzing {len(seeds)} seed files for {args.seconds:.0f} s (seed {args.seed}); runs {runs}", flush=True)
    report = fuzz(seeds, runs, seconds=args.seconds, max_execs=args.max_execs, seed=args.seed, out=args.out,
                  timeout=args.timeout, max_rss_mb=args.max_rss_mb)
    d = report.as_dict()
    (args.out / "report.json").write_text(json.dumps(d, indent=2) + "\n")
    print(f"{d['executions']} executions in {d['seconds']} s ({d['executions_per_s']}/s); "
          f"{len(d['findings'])} findings; per target {json.dumps(d['by_target'])}; report {args.out / 'report.json'}")
    return 1 if d["findings"] else 0


def _quick_run(task: str, data: Path, root: Path) -> Path:
    """A briefly trained run to fuzz ``predict`` with (kept between fuzz sessions)."""
    from medcnn.cli.main import main as cli

    run = root / task
    if (run / "checkpoints" / "best.ckpt").is_file():
        return run
    if task == "classify":
        args = ["train", str(data / "medmnist" / "breastmnist.npz"), "--epochs", "1", "--set", "ensemble=1"]
    else:
        args = ["train", str(data / "msd_task04_hippocampus"), "--epochs", "1", "--set", "max_minutes=0",
                "--set", "segment.patches_per_epoch=16"]
    assert cli(args + ["--out", str(run), "--overwrite", "--no-progress"]) == 0
    return run


if __name__ == "__main__":
    sys.exit(main())
