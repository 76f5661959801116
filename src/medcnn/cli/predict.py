"""``medcnn predict``: any run, any number of inputs (files, DICOM series, folders, CSV lists).

One input at a time, with a progress bar; with ``--results FILE.csv|.jsonl`` every result is
appended (and flushed) as soon as it exists, so a crash or a kill loses nothing already written and
the same command run again continues where it stopped. In a batch, a bad input becomes an error
row and the others go on; the command then exits 2 naming how many failed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from medcnn.cli.render import print_table
from medcnn.errors import MedcnnError
from medcnn.tasks.jobs import predict_job

out = Console()
err = Console(stderr=True)
TABLE_ROWS = 50  # larger batches print a summary instead of a table


def run_predict(run: Path, inputs: list[Path], *, checkpoint: str = "best", engine: str = "torch",
                out_dir: Path | None = None, overwrite: bool = False, max_uncertainty: float | None = None,
                results_path: Path | None = None, progress: bool = True,
                keep_phi: bool = False, allow_out_of_domain: bool = False,
                rtstruct: bool = False) -> tuple[list[dict[str, Any]], int]:
    """(results, number of inputs that failed). Results carry no patient identity unless ``keep_phi``:
    then DICOM inputs' rows gain patient_id, patient_name, ... (``medcnn.io.phi.LINK_FIELDS``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcnn.infer.stream import ResultStream
    from medcnn.io.inputs import expand_inputs
    from medcnn.io.phi import LINK_FIELDS, link_fields
    from medcnn.tasks.outputs import input_output_dir

    job = predict_job(run, checkpoint, engine, out_dir, overwrite, max_uncertainty, keep_phi, allow_out_of_domain,
                      rtstruct)
    paths = expand_inputs(inputs)
    paths = getattr(job, "inputs", list)(paths)  # optional in a plugin's job: e.g. a case's channel files are one input
    batch = len(paths) > 1 or results_path is not None
    stream = ResultStream(results_path, job.fields + (list(LINK_FIELDS) if keep_phi else [])) if results_path else None
    resuming = bool(stream and stream.done)
    todo = [p for p in paths if not (stream and str(p) in stream.done)]
    if resuming:
        out.print(f"{len(paths) - len(todo)} of {len(paths)} inputs already in {results_path}; continuing")
    results, failed, taken = [], 0, set()
    bar = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=not progress or len(todo) < 2)
    try:
        with bar:
            task_id = bar.add_task("predict", total=len(todo))
            for p in todo:
                try:
                    # an unfinished output folder of an interrupted batch is this job's own: replaced
                    dest = input_output_dir(job.out_dir, p, overwrite or resuming, taken) if job.out_dir else None
                    r = job.one(p, dest)
                    if keep_phi:
                        r.update(link_fields(p))
                except MedcnnError as e:
                    if not batch:
                        raise
                    failed += 1
                    err.print(f"error: {e}", highlight=False, soft_wrap=True)
                    r = {"file": str(p), "error": e.problem}
                results.append(r)
                if stream:
                    stream.write({**job.row(r), **{k: r.get(k) for k in LINK_FIELDS if keep_phi}})
                bar.advance(task_id)
    finally:
        if stream:
            stream.close()
    if len(results) <= TABLE_ROWS and len(results) > failed:
        print_table(job.table(results))
    else:
        out.print(f"{len(results) - failed} of {len(results)} inputs predicted")
    if stream:
        out.print(f"results in {results_path}")
    return results, failed
