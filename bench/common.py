"""What every benchmark script shares: the commit label, merging records into a results file,
and replacing a README table between two markers (all writes atomic). Importing it silences
Lightning's tips and deprecation warnings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from medcnn.utils.quiet import quiet_libraries

ROOT = Path(__file__).resolve().parents[1]


def bench_module(name: str, root: Path = ROOT):
    """bench/<name>.py of ``root`` (this checkout unless given), loaded by path once: names such as
    ``infer`` or ``transfer`` are packages elsewhere (the tests' own) when this runs under pytest."""
    key = f"bench_{name}" if root == ROOT else f"bench_{name}@{root}"
    if key not in sys.modules:
        import importlib.util

        spec = importlib.util.spec_from_file_location(key, root / "bench" / f"{name}.py")
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


quiet_libraries()  # benchmark logs keep the runs' own lines, as the CLI's do


PEAK_MB = ("import re, resource\n"
           "def peak_mb():\n"
           "    try:\n"
           "        return int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
           "    except OSError:\n"
           "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n")
"""The child's own peak resident memory. Not ``ru_maxrss``: Linux carries the parent's peak into a child
across fork and exec, so a child of a benchmark (gigabytes after training) would report the
benchmark's peak. ``VmHWM`` belongs to the child's address space alone (``ru_maxrss`` off Linux)."""


def child_cost(code: str, *args: str) -> tuple[float, float]:
    """(seconds, peak MB) that ``code`` (Python, setting ``seconds``) measures when run in a process
    of its own with ``args`` as ``sys.argv[1:]``: the memory is that process's, not the benchmark's."""
    done = subprocess.run([sys.executable, "-c", PEAK_MB + code + "; print('COST', seconds, peak_mb())", *args],
                          capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("COST")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"the measured process failed: {done.stderr[-2000:]}")
    _, seconds, mb = line.split()
    return float(seconds), round(float(mb), 1)


def medcnn_cost(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak MB) of the command ``medcnn ARGV...`` in a process of its own."""
    return child_cost("import sys, time; from medcnn.cli.main import main; t = time.perf_counter(); "
                      "rc = main(sys.argv[1:]); seconds = time.perf_counter() - t; assert rc == 0, rc", *argv)


def commit(*paths: str) -> str:
    """Short HEAD, with "-dirty" when src/ or the given bench files differ from it."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", "src", *paths)
        return run("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def same_code(old: str, *paths: str) -> bool:
    """True when src/, pyproject.toml and ``paths`` are the same at commit ``old`` as in the working
    tree, so a result measured at ``old`` is a result of the code at hand."""
    if not old or old == "unknown" or old.endswith("-dirty"):
        return False
    try:
        r = subprocess.run(["git", "diff", "--quiet", old, "--", "src", "pyproject.toml", *paths], cwd=ROOT,
                           capture_output=True)
    except OSError:
        return False
    return r.returncode == 0


def load_reusable(path: Path, sets: list[str], *paths: str) -> dict | None:
    """A record saved by an earlier (possibly killed) benchmark run, if it was measured with the
    same plan overrides and the same code; else None."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("plan_overrides") != list(sets) or not same_code(rec.get("commit", ""), *paths):
        return None
    return rec


def train_resumable(plan, data, run_dir: Path, sets: list[str], script: str, *files: str) -> Path:
    """``medcnn.tasks.train`` into ``run_dir``, except that a run a killed benchmark left there
    (started by the same code, plan and overrides: RUN_DIR.started.json) is not started over: an
    unfinished one continues from its last checkpoint with the epochs its time budget chose, a
    finished one only repeats what follows training. So a session's end costs at most an epoch."""
    import hashlib

    from medcnn.plan import Plan
    from medcnn.runs import RunFolder
    from medcnn.tasks import train
    from medcnn.tasks.registry import task_of

    digest = hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
    marker = run_dir.with_name(run_dir.name + ".started.json")
    started = load_reusable(marker, sets, script, *files)
    folder = RunFolder(run_dir)
    if started and started.get("plan") == digest and folder.is_run():
        saved = Plan.load(folder.plan_file)
        if folder.finished():
            print(f"{run_dir}: training had finished; not repeated", flush=True)
            task_of(saved).after_training(run_dir, saved, data)
            return run_dir
        if saved.ensemble > 1 or folder.checkpoint_file("last").is_file():
            print(f"{run_dir}: continuing the interrupted training from its last checkpoint", flush=True)
            return train(saved, data, run_dir, resume=True, progress=False)
    save_record(marker, {"plan": digest, **run_meta(script, sets, *files)})
    return train(plan, data, run_dir, overwrite=True, progress=False)


def save_record(path: Path, rec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, path)


def update_results(path: Path, records: list[dict], order: list[str]) -> list[dict]:
    """Replace the records of the datasets in ``records``, keep the others; sorted by ``order``."""
    old = json.loads(path.read_text()) if path.is_file() else []
    names = {r["dataset"] for r in records}
    merged = [r for r in old if r["dataset"] not in names] + records
    merged.sort(key=lambda r: order.index(r["dataset"]) if r["dataset"] in order else 99)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    os.replace(tmp, path)
    return merged


def update_readme(path: Path, start: str, end: str, table: str) -> None:
    text = path.read_text()
    if start not in text or end not in text:
        print(f"{path}: no {start} ... {end} markers; table not written", file=sys.stderr)
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head + start + "\n" + table + "\n" + end + tail)
    os.replace(tmp, path)


def add_common_args(ap, name: str) -> None:
    """--out, --results, --readme (the results page), --set: the options every benchmark takes."""
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / f"bench-{name}")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / f"{name}.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "docs" / "results.md",
                    help="the page whose table this bench rewrites (default: the documentation's results page)")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="plan override for every run (marks the results as not the default plan)")


def run_meta(script: str, sets: list[str], *files: str) -> dict:
    """Commit, command, date and machine, recorded with every result."""
    import platform
    import time

    import torch

    return {"commit": commit(script, "bench/common.py", *files),
            "command": " ".join(["python", script, *sys.argv[1:]]), "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus", "plan_overrides": sets}


TASK_RUNS = {"classify": ROOT / "runs" / "demo-breastmnist", "segment": ROOT / "runs" / "bench-segment" / "hippocampus",
             "enhance": ROOT / "runs" / "bench-enhance" / "mr-gaussian"}
"""Each task's default model for the inference and serving benchmarks (made by make demo / bench-*)."""


def add_task_run_args(ap) -> None:
    """--classify/--segment/--enhance RUN and --tasks: which run folders a benchmark loads."""
    for task, d in TASK_RUNS.items():
        ap.add_argument(f"--{task}", type=Path, default=d, help=f"{task} run folder (default {d.relative_to(ROOT)})")
    ap.add_argument("--tasks", nargs="+", default=list(TASK_RUNS), choices=list(TASK_RUNS))


def task_runs(args) -> dict[str, Path]:
    """The run folder of each task asked for (a zoo model's name gives its checked copy); exits
    naming the command that makes a missing one."""
    from medcnn import zoo

    runs = {t: getattr(args, t) for t in args.tasks}
    runs = {t: zoo.resolve(zoo.zoo_name(str(r))) if zoo.zoo_name(str(r)) else r for t, r in runs.items()}
    for task, run in runs.items():
        if not (run / "plan.yaml").is_file():
            sys.exit(f"{run}: not a run folder; train one (make demo / bench-segment / bench-enhance) or pass --{task}")
    return runs


def labels_digest(labels) -> str:
    """SHA-256 of a label array (as int64, with its shape): which test labels kept predictions belong to."""
    import hashlib

    import numpy as np

    a = np.ascontiguousarray(np.asarray(labels), dtype=np.int64)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def load_predictions(files: list[Path], labels):
    """(list of per-seed probabilities, labels, label type) from kept ``probs`` npz files and the test
    ``labels`` they were made for (read from the dataset: the files keep only their digest)."""
    import numpy as np

    loaded = [np.load(f) for f in files]
    for f, z in zip(files, loaded):
        if str(z["labels_sha256"]) != labels_digest(labels):
            raise SystemExit(f"{f}: kept for other test labels than the dataset's now")
    probs = [z["probs"].astype(np.float32) for z in loaded]
    labels = np.asarray(labels)
    label_type = "multilabel" if labels.ndim > 1 else "binary" if probs[0].shape[1] == 2 else "multiclass"
    return probs, labels, label_type


def save_predictions(path: Path, probs, labels) -> None:
    """Test probabilities (float32: float16 rounds a confident model's probabilities to exactly 0 or 1,
    and the ties this makes moved AUC by up to 0.38 in the transfer bench), kept beside the records
    so that intervals and new metrics never need a retraining; of the labels only their digest (the
    labels are the dataset's, read from the data root again)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, probs=np.asarray(probs).astype(np.float32), labels_sha256=labels_digest(labels))
    tmp.replace(path)
