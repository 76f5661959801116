"""The inference benchmark behind the README's inference table (issue #7).

For each task's model (a run folder per task), the network alone on inputs of the shape it serves
(classification: the preprocessed image; segmentation: one sliding window; enhancement: a 256×256
slice), on this machine's threads:

- images/s at batch 64 (segmentation windows: batch 8, the sliding-window batch of its plan is smaller),
- p50 / p95 latency at batch 1,

for each engine: ``monai-eager`` (the MONAI network as built, float32, eval mode: MONAI's default),
``torch-bf16`` (bfloat16 autocast; channels_last in 2D; classifiers with batch norms folded into
their convolutions, as the Predictor runs them), ``torch-compile`` (the same under
torch.compile), ``onnx`` (ONNX Runtime, float32, the graph `medcnn export` writes). ``speedup`` is an
engine's images/s over monai-eager's, measured side by side in one run.

    make bench-infer
    .venv/bin/python bench/infer.py --classify runs/bench-classify/breastmnist --repeats 20

Writes bench/results/infer.json and the README table between the bench-infer markers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
START, END = "<!-- bench-infer:start -->", "<!-- bench-infer:end -->"
ENGINES = ("monai-eager", "torch-bf16", "torch-compile", "onnx")


def default_engine(plan) -> str:
    """What `medcnn predict` runs for this plan: bf16 autocast where training used it (the predictors'
    rule), else float32 eager."""
    from medcnn.tasks import task_of
    from medcnn.utils.precision import resolve_precision

    bf16 = resolve_precision(plan.precision, task_of(plan).cpu_bf16(plan)) == "bf16-mixed"
    return "torch-bf16" if bf16 else "monai-eager"


def model_and_input(task: str, run: Path):
    """(network in eval mode, one input (1, C, *S), throughput batch) of a run."""
    from medcnn.export.onnx import torch_model
    from medcnn.tasks import run_task

    model = torch_model(run, "best")
    module, example, *_ = run_task(run).export_graph(model)
    module.eval().to(memory_format=torch.contiguous_format)  # MONAI's default layout for the baseline
    if task == "enhance":
        example = torch.rand(1, example.shape[1], 256, 256)
    batch = 8 if task == "segment" else 64
    return model, module, torch.rand(1, *example.shape[1:]), batch


def runner(engine: str, module, x1: torch.Tensor, task: str, run: Path):
    """A function input -> output for one engine (set up and warmed up)."""
    two_d = x1.ndim == 4
    if engine == "onnx":
        from medcnn.export.onnx import export_run
        from medcnn.infer.onnx_net import OnnxNet, export_paths

        if not export_paths(run)[0].is_file():
            export_run(run)
        net = OnnxNet(export_paths(run)[0])
        return lambda x: net(x)
    net = module
    if engine in ("torch-bf16", "torch-compile") and task == "classify":
        from medcnn.models.fold import folded_copy

        net = folded_copy(module)  # what the Predictor runs: batch norms folded into the convolutions
    if engine in ("torch-bf16", "torch-compile") and two_d:
        net = net.to(memory_format=torch.channels_last)
    if engine == "torch-compile":
        net = torch.compile(net, dynamic=False)  # one graph per batch size; dynamic shapes fail for 3D convs
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if engine != "monai-eager" else nullcontext
    fmt = torch.channels_last if two_d and engine != "monai-eager" else torch.contiguous_format

    def run_fn(x):
        with torch.inference_mode(), cast():
            return net(x.contiguous(memory_format=fmt))

    return run_fn


def measure(fn, x1: torch.Tensor, batch: int, repeats: int) -> dict:
    xb = x1.expand(batch, *x1.shape[1:]).contiguous() + 0
    for _ in range(3):  # warm-up (compilation, allocator, ORT arenas)
        fn(x1), fn(xb)
    lat = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x1)
        lat.append((time.perf_counter() - t) * 1000)
    n, t = 0, time.perf_counter()
    while n < max(3, repeats // 4) or time.perf_counter() - t < 2.0:
        fn(xb)
        n += 1
    ips = n * batch / (time.perf_counter() - t)
    lat.sort()
    return {"images_per_s": round(ips, 1), "p50_ms": round(statistics.median(lat), 2),
            "p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2), "batch": batch}


def bench_task(task: str, run: Path, repeats: int, engines: list[str]) -> list[dict]:
    model, module, x1, batch = model_and_input(task, run)
    recs = []
    for engine in engines:
        try:
            fn = runner(engine, module, x1, task, run)
            r = measure(fn, x1, batch, repeats)
        except Exception as e:  # noqa: BLE001 - one engine failing (e.g. a compiler bug) is a result too
            print(f"{task} {engine}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
            continue
        recs.append({"task": task, "engine": engine, "default": engine == default_engine(model.plan),
                     "run": str(run), "input": list(x1.shape[1:]),
                     "network": model.plan.model.name, "threads": torch.get_num_threads(), **r})
        print(json.dumps(recs[-1]), flush=True)
    base = next((r["images_per_s"] for r in recs if r["engine"] == "monai-eager"), None)
    for r in recs:
        r["speedup"] = round(r["images_per_s"] / base, 2) if base else None
    return recs


def table(records: list[dict]) -> str:
    lines = ["| task | input | engine | images/s (batch) | p50 ms | p95 ms | × MONAI eager | commit |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['task']} ({r['network']}) | {'×'.join(map(str, r['input']))} | "
                     f"{r['engine'] + (' (default)' if r.get('default') else '')} | "
                     f"{r['images_per_s']:.1f} ({r['batch']}) | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['speedup']:.2f} | `{r['commit']}` |")
    cmds = sorted({r["command"] for r in records})
    return "\n".join(lines + ["", "Command(s): " + "; ".join(f"`{c}`" for c in cmds) + "."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_task_run_args(ap)
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "infer.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    meta = common.run_meta("bench/infer.py", [])
    records = []
    for task, run in common.task_runs(args).items():
        records += [{**r, **meta} for r in bench_task(task, run, args.repeats, args.engines)]
    # the tasks not measured this time keep their earlier records
    old = json.loads(args.results.read_text()) if args.results.is_file() else []
    records = sorted([r for r in old if r["task"] not in args.tasks] + records,
                     key=lambda r: (list(common.TASK_RUNS).index(r["task"]), ENGINES.index(r["engine"])))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.results.parent, delete=False, suffix=".tmp") as fh:
        json.dump(records, fh, indent=1)
    Path(fh.name).replace(args.results)
    common.update_readme(args.readme, START, END, table(records))
    print(table(records))


if __name__ == "__main__":
    main()
