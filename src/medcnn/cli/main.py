"""The ``medcnn`` command line: thin typer commands over the library.

Errors in the user's input print one line and exit 2 (tracebacks only with ``--debug``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from medcnn.errors import MedcnnError

EPILOG = """Examples:

  medcnn fetch breastmnist

  medcnn plan breastmnist -o plan.yaml

  medcnn train breastmnist --plan plan.yaml --out runs/breast

  medcnn train path/to/class_folders --epochs 20 --set optim.lr=1e-3

  medcnn evaluate runs/breast --split test

  medcnn train --resume runs/breast        (after a crash or a kill: continues from the last checkpoint)

  medcnn train pneumoniamnist --devices 2 --out runs/pneu   (data-parallel: 2 processes; torchrun/srun for several machines)

  medcnn train pneumoniamnist --pretrained resnet18_imagenet.pth --finetune freeze-then-unfreeze   (transfer)

  medcnn pretrain pneumoniamnist breastmnist organamnist --out runs/ssl28 && medcnn train breastmnist --pretrained runs/ssl28

  medcnn predict runs/breast scan.dcm image.png volume.nii.gz --json preds.json

  medcnn predict runs/breast folder_of_images/ list.csv --results preds.csv   (streamed; rerun to continue)

  medcnn explain runs/breast image.png --method gradcam --out heatmaps/

  medcnn export runs/breast --format onnx && medcnn predict runs/breast image.png --engine onnx

  medcnn train path/to/Task04_Hippocampus --out runs/hippo        (MSD / nnU-Net folder: segmentation)

  medcnn train path/to/Task04_Hippocampus --out runs/hippo5 --set ensemble=5 --set segment.split.fold=cv   (nnU-Net's 5 folds)

  medcnn predict runs/hippo scan.nii.gz dicom_series_folder/ --out masks/

  medcnn compare runs/hippo before.nii.gz after.nii.gz

  medcnn measure mask.nii.gz --name 1=Anterior --name 2=Posterior

  medcnn augment path/to/Task04_Hippocampus --preview aug.png --set augment.bias_field=0.3 --set augment.elastic=0.05

  medcnn train mr_scans/ --degradation rician --level 0.02,0.1 --out runs/mr-denoise   (enhancement)

  medcnn predict runs/mr-denoise dicom_series_folder/ --out denoised/   (a new, derived DICOM series)

  medcnn serve runs/breast runs/hippo runs/mr-denoise     (web workbench + REST API at http://127.0.0.1:8000/)
"""

app = typer.Typer(help="Convolutional neural networks for medical images: classify, segment, enhance.",
                  epilog=EPILOG, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and library logs."),
          plugin: List[str] = typer.Option([], "--plugin", metavar="MODULE", help="Import a module or .py file that "
                                           "registers tasks or networks first (repeatable; also $MEDCNN_PLUGINS).")):
    _state["debug"] = debug
    if not debug:
        from medcnn.utils.quiet import quiet_libraries

        quiet_libraries()
    if plugin:
        from medcnn.tasks import load_plugins

        load_plugins(plugin)


@app.command()
def fetch(name: str = typer.Argument(..., help="Dataset: a MedMNIST name (breastmnist, organmnist3d_64, ...), "
                                                "msd-hippocampus or drive."),
          root: Optional[Path] = typer.Option(None, help="Data root (default $MEDCNN_DATA or ~/.cache/medcnn)."),
          offline: bool = typer.Option(False, help="Never download; only verify a present copy."),
          list_: bool = typer.Option(False, "--list", help="List every fetchable name and exit.")):
    """Put a public dataset into the data root, verified by its official MD5.

    Uses a present copy; downloads from the official source when absent and online.
    """
    from medcnn.data.catalog import dataset_names
    from medcnn.data.fetch import fetch as do_fetch

    if list_:
        out.print("\n".join(dataset_names()))
        return
    path = do_fetch(name, root, download=not offline, progress=True)
    out.print(f"{name}: {path} (verified)")


TASK_HELP = ("auto (a segmentation layout -> segment, --degradation -> enhance, else classify) | classify | segment | "
             "enhance | a plugin's task.")
DEGRADATION_HELP = ("Enhancement: what to learn to undo: gaussian | rician | speckle | downsample | lowdose-ct | "
                    "sparse-view-ct, or none when the images are the noisy scans (Noise2Void; implies --task enhance).")
LEVEL_HELP = ("Degradation level, or a range 'lo,hi' for one blind model: sigma (normalised units, e.g. 0.098 = 25/255), "
              "downsample factor, photons per detector bin (lowdose-ct), number of views (sparse-view-ct).")
LOGGER_HELP = ("Also log to: tensorboard (RUN/logs/tensorboard) | mlflow (MLFLOW_TRACKING_URI, else RUN/logs/mlruns); "
               "repeatable. RUN/logs/metrics.csv is always written.")


def _levels(level: Optional[str]) -> Optional[list[float]]:
    if level is None:
        return None
    try:
        vals = [float(eval_fraction(v)) for v in level.split(",") if v.strip()]
    except ValueError:
        raise MedcnnError(f"--level must be a number or 'lo,hi', got {level!r}") from None
    return vals


def eval_fraction(text: str) -> float:
    """'0.1', '25/255' -> float (no eval)."""
    num, sep, den = text.strip().partition("/")
    return float(num) / float(den) if sep else float(num)


def _options(degradation: Optional[str] = None, level: Optional[str] = None) -> argparse.Namespace:
    """The task options of `plan`, `train` and `augment` (enhancement: what to learn to undo)."""
    return argparse.Namespace(degradation=degradation, level=_levels(level))


def _default_plan(data: str, task: str, degradation: Optional[str] = None, level: Optional[str] = None):
    """(dataset, default plan) of ``data`` for ``--task`` (auto: the task that recognises it)."""
    from medcnn.tasks import choose_task

    options = _options(degradation, level)
    t = choose_task(data, task, options)
    ds = t.load_data(data)
    return ds, t.default_plan(ds, data, options)



def _override(p, sets):
    """The plan with ``--set`` assignments; another network drops the options it does not take."""
    from medcnn.models import override_plan

    return override_plan(p, list(sets))


@app.command()
def plan(data: str = typer.Argument(..., help="MedMNIST name, .npz file, class-folder tree or CSV (path,label[,split]); "
                                    "for segmentation an MSD/nnU-Net folder, DRIVE-style folder or images/ + labels/."),
         output: Path = typer.Option(Path("plan.yaml"), "-o", "--output", help="Where to write the plan YAML."),
         size: Optional[int] = typer.Option(None, help="Input size (e.g. 64: uses breastmnist_64 for MedMNIST names)."),
         set_: List[str] = typer.Option([], "--set", help="Override a plan field: key=value (repeatable)."),
         task: str = typer.Option("auto", help=TASK_HELP),
         degradation: Optional[str] = typer.Option(None, help=DEGRADATION_HELP),
         level: Optional[str] = typer.Option(None, help=LEVEL_HELP),
         overwrite: bool = typer.Option(False, help="Replace an existing plan file.")):
    """Fingerprint a dataset and write an editable plan (task, model, input size / patch, batch, epochs, ...)."""
    from medcnn.tasks import task_of

    if output.exists() and not overwrite:
        raise MedcnnError("plan file exists; pass --overwrite to replace it", output)
    data = _sized(data, size)
    _, p = _default_plan(data, task, degradation, level)
    p = _override(p, set_)
    p.save(output)
    _print_fingerprint(p.fingerprint)
    out.print(f"plan written to {output}: {task_of(p).describe_plan(p)}")


@app.command()
def train(data: Optional[str] = typer.Argument(None, help="Dataset (as for `plan`); default: the plan's `data`."),
          plan_file: Optional[Path] = typer.Option(None, "--plan", help="Plan YAML (default: planned from the data now)."),
          out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/NAME-TIME)."),
          epochs: Optional[int] = typer.Option(None, help="Override plan.epochs."),
          max_minutes: Optional[float] = typer.Option(None, help="Training time budget in minutes (0: none): the "
                                                      "first steps are timed and the epochs cut to fit."),
          batch_size: Optional[int] = typer.Option(None, help="Override plan.batch_size."),
          lr: Optional[float] = typer.Option(None, help="Override plan.optim.lr."),
          model: Optional[str] = typer.Option(None, help="Override plan.model.name (see `medcnn models`)."),
          seed: Optional[int] = typer.Option(None, help="Override plan.seed."),
          size: Optional[int] = typer.Option(None, help="Input size (MedMNIST: picks the file of that size)."),
          augment: Optional[str] = typer.Option(None, help="Augmentation preset: none | light | default | heavy."),
          precision: Optional[str] = typer.Option(None, help="auto | 32 | bf16-mixed | 16-mixed."),
          set_: List[str] = typer.Option([], "--set", help="Override any plan field: key=value (repeatable)."),
          task: str = typer.Option("auto", help=TASK_HELP),
          degradation: Optional[str] = typer.Option(None, help=DEGRADATION_HELP),
          level: Optional[str] = typer.Option(None, help=LEVEL_HELP),
          pretrained: Optional[str] = typer.Option(None, help="Start from pretrained weights: a weights file "
                                                   "(torchvision/timm state dict, checkpoint), a run folder, named weights "
                                                   "(squeezenet1_1.imagenet, or torchvision's name) or a backbone name."),
          finetune: Optional[str] = typer.Option(None, help="With --pretrained: finetune | linear-probe | "
                                                 "freeze-then-unfreeze (see transfer.* in the plan)."),
          overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
          resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run folder from its last checkpoint."),
          devices: str = typer.Option("1", help="Training processes (CPU) or GPUs per machine; >1 trains data-parallel "
                                      "(Lightning DDP). The plan's batch_size is the effective batch of all processes."),
          nodes: int = typer.Option(1, help="Machines (launch on each with torchrun or srun; see the deployment guide, docs/deploy.md)."),
          progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."),
          logger: List[str] = typer.Option([], help=LOGGER_HELP)):
    """Train a model of the data's task (classify, segment, enhance, a plugin's); writes a run folder (plan,
    best/last checkpoints, metrics, learning curve, logs; the split)."""
    from functools import partial

    from medcnn.plan import Plan
    from medcnn.runs import RunFolder
    from medcnn.tasks import task_of, train
    from medcnn.train.distributed import is_primary
    from medcnn.transforms.augment import preset

    n_dev = int(devices) if devices.isdigit() else devices
    do_train = partial(train, devices=n_dev, nodes=nodes, loggers=logger)
    say = out.print if is_primary() else (lambda *a, **k: None)  # one voice in a data-parallel run
    if resume is not None:
        p = RunFolder(resume).require().plan()
        ds = task_of(p).load_data(p.data, p)
        say(f"resuming {resume}")
        do_train(p, ds, resume, progress=progress, resume=True)
        return
    if plan_file is not None:
        p = Plan.load(plan_file)
        data = data or p.data
        if not data:
            raise MedcnnError("no DATA given and the plan has no `data` field")
        data = _sized(data, size)
        ds = task_of(p).load_data(data, p)
        p.data = data
    else:
        if not data:
            raise MedcnnError("give DATA or --plan")
        data = _sized(data, size)
        ds, p = _default_plan(data, task, degradation, level)
    sets = list(set_)
    for key, v in (("epochs", epochs), ("max_minutes", max_minutes), ("batch_size", batch_size), ("optim.lr", lr), ("model.name", model),
                   ("seed", seed), ("precision", precision)):
        if v is not None:
            sets.append(f"{key}={v}")
    p = _override(p, sets)
    if augment is not None:
        a = preset(augment)
        p.augment = a
    if pretrained is not None or finetune is not None:
        tr = dataclasses.replace(p.transfer, **({"pretrained": pretrained} if pretrained is not None else {}),
                                 **({"strategy": finetune} if finetune is not None else {}))
        p = dataclasses.replace(p, transfer=tr).validate()
    if p.transfer.pretrained:  # a missing source fails before a run folder is made
        from medcnn.transfer.catalog import plan_for_weights
        from medcnn.transfer.weights import resolve_source

        resolve_source(p.transfer.pretrained)
        p = plan_for_weights(p)
    run_dir = out_dir or Path("runs") / f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    t = task_of(p)
    t.check_data(p, ds)
    say(t.describe_training(p, ds, run_dir))
    do_train(p, ds, run_dir, overwrite=overwrite, progress=progress)
    info = _finished(run_dir)
    say(f"{t.describe_result(p, info)}; run folder {run_dir}")


def _finished(run_dir: Path) -> dict:
    """The run's record, on the process that wrote it (the others of a data-parallel run stop here)."""
    from medcnn.runs import RunFolder
    from medcnn.train.distributed import is_primary

    if not is_primary():
        raise typer.Exit(0)
    return RunFolder(run_dir).info()


@app.command()
def evaluate(run: Path = typer.Argument(..., help="Run folder written by `medcnn train`, or a zoo model's name."),
             split: str = typer.Option("test", help="train | val | test; all: every image (classification, "
                                       "e.g. an external test set given with --data)."),
             checkpoint: str = typer.Option("best", help="best | last | path to a .ckpt."),
             data: Optional[str] = typer.Option(None, help="Evaluate on another dataset: classification (same "
                                                "classes; RUN/eval/<data>-<split>.*), enhancement (its clean images, "
                                                "degraded as in training; RUN/eval/enhance_<data>.*)."),
             case: List[str] = typer.Option([], "--case", help="Segmentation: only this case of the split "
                                            "(repeatable; RUN/eval/<split>-subset_*)."),
             json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
             paper: bool = typer.Option(False, "--paper", help="Show the MedMNIST v2 paper's ResNet numbers beside ours.")):
    """Classification: AUC, ACC, per-class sensitivity/specificity, ECE; confusion/ROC/reliability PNGs.
    Segmentation: Dice, IoU, HD95, ASSD per label, volumes vs reference, overlays.
    Enhancement: PSNR, SSIM and ms per image beside BM3D / NLM / bicubic / FBP on the same images. All in RUN/eval/."""
    from medcnn.cli.render import print_table
    from medcnn.tasks import run_task

    run = _run(run)
    t = run_task(run, "evaluate")
    if case and "cases" not in t.evaluate_options:
        raise MedcnnError(f"--case does not apply to a {t.name} run", run)
    r = t.evaluate(run, split, checkpoint, data, **({"cases": list(case)} if case else {}))
    if json_out:
        out.print_json(json.dumps(r))
        return
    print_table(t.report_table(run, r))
    if paper and "auc" in r:  # a classification report
        _print_paper(r)


def _print_paper(r: dict) -> None:
    from medcnn.data.catalog import paper_reference

    name = Path(r["data"]).name.removesuffix(".npz")
    flag = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
    ref = paper_reference(flag)
    if not ref:
        out.print(f"(no published MedMNIST v2 reference for {flag})")
        return
    t = Table(title=f"{flag} test set: medcnn vs MedMNIST v2 paper (Table 3/4)")
    t.add_column("model"), t.add_column("AUC", justify="right"), t.add_column("ACC", justify="right")
    t.add_row("medcnn (this run)", f"{r['auc']:.3f}", f"{r['acc']:.3f}", style="bold")
    for model, (auc, acc) in ref.items():
        t.add_row(f"paper {model}", f"{auc:.3f}", f"{acc:.3f}")
    out.print(t)


@app.command()
def predict(run: Path = typer.Argument(..., help="Run folder, or a zoo model's name (medcnn models --pretrained)."),
            inputs: List[Path] = typer.Argument(None, help="PNG/JPEG/TIFF, DICOM file or series folder, NIfTI; a folder "
                                                "of images (searched recursively) or a CSV listing paths."),
            checkpoint: str = typer.Option("best", help="best | last | path to a .ckpt."),
            json_path: Optional[Path] = typer.Option(None, "--json", help="Also write all results to this JSON file at the end."),
            results_path: Optional[Path] = typer.Option(None, "--results", help="Stream one row per input to this .csv or "
                                                        ".jsonl as it is predicted; run again to continue after a crash."),
            max_uncertainty: Optional[float] = typer.Option(None, help="Abstain ('uncertain - refer') when 1 - top "
                                                            "probability exceeds this (calibrated once `evaluate` ran)."),
            out_dir: Optional[Path] = typer.Option(None, "--out", help="Segmentation / enhancement: output folder (default RUN/predictions)."),
            overwrite: bool = typer.Option(False, help="Segmentation / enhancement: replace existing output folders."),
            engine: str = typer.Option("torch", help="torch | onnx (the run's `medcnn export`, in ONNX Runtime)."),
            keep_phi: bool = typer.Option(False, "--keep-phi", help="DICOM outputs keep the source's patient name/ID/"
                                          "birth date (to file them into the patient's record in a PACS), and "
                                          "results gain patient_id etc. Default: no patient identity anywhere."),
            allow_out_of_domain: bool = typer.Option(False, "--allow-out-of-domain", help="Classification: also "
                                                     "predict inputs unlike the training data (another modality, "
                                                     "colour vs greyscale); their rows still say so."),
            rtstruct: bool = typer.Option(False, "--rtstruct", help="Segmentation of a DICOM series: also an RTSTRUCT "
                                          "(contours, for radiotherapy systems; needs medcnn[rtstruct])."),
            progress: bool = typer.Option(True, help="Progress bar for several inputs."),
            dicomweb: Optional[str] = typer.Option(None, help="A PACS's DICOMweb root URL: fetch --study, predict, store "
                                                   "the results (DICOM SEG, derived series) into the same study. "
                                                   "Credentials: MEDCNN_DICOMWEB_USER / _PASSWORD or ~/.netrc."),
            study: Optional[str] = typer.Option(None, help="With --dicomweb: the StudyInstanceUID."),
            series: List[str] = typer.Option([], help="With --dicomweb: SeriesInstanceUIDs to predict (repeatable; "
                                             "default: every image series of the study; a model of several "
                                             "sequences: one per channel, in its channel order)."),
            query: Optional[str] = typer.Option(None, help="With --dicomweb, instead of --study: every study matching "
                                                "this QIDO-RS query (e.g. 'Modality=MR&StudyDate=20240101-20241231'); "
                                                "studies already done by this model version are skipped.")):
    """Classification: class probabilities, and whether each input looks like the training data. Segmentation: mask (NIfTI, PNG in 2D, DICOM SEG for a DICOM
    series), overlay PNG and measurements (size in mm³/mm², components, centroids, boxes) per input.
    Enhancement: the restored image (a new DICOM series for DICOM, NIfTI for NIfTI, PNG for PNG) and a
    before / after / difference PNG. Several inputs: a bad one is reported and skipped (exit 2 at the end)."""
    from medcnn.cli.predict import run_predict
    from medcnn.utils.files import atomic_write_json

    run = _run(run)
    if dicomweb or study or query:
        _predict_study(run, dicomweb, study, list(series), checkpoint, engine, inputs, query, rtstruct)
        return
    if not inputs:
        raise MedcnnError("give INPUTS, or --dicomweb URL --study UID")
    results, failed = run_predict(run, list(inputs), checkpoint=checkpoint, engine=_engine(engine),
                                  out_dir=out_dir, overwrite=overwrite, max_uncertainty=max_uncertainty,
                                  results_path=results_path, progress=progress, keep_phi=keep_phi,
                                  allow_out_of_domain=allow_out_of_domain, rtstruct=rtstruct)
    if json_path:
        atomic_write_json(json_path, {"run": str(run), "checkpoint": checkpoint, "engine": engine, "results": results})
        out.print(f"written {json_path}")
    if failed:
        where = f"; error rows in {results_path}" if results_path else ""
        raise MedcnnError(f"{failed} of {len(results)} inputs failed (each named above{where})")


def _predict_study(run: Path, url: Optional[str], study: Optional[str], series: list[str], checkpoint: str,
                   engine: str, inputs, query: Optional[str], rtstruct: bool = False) -> None:
    from medcnn.pacs.roundtrip import predict_query, predict_study

    if not url or bool(study) == bool(query) or inputs or (query and series):
        raise MedcnnError("--dicomweb URL goes with --study UID [--series UID...] or with --query, without INPUTS")
    if query:
        rows = predict_query(run, url, query, checkpoint=checkpoint, engine=_engine(engine), rtstruct=rtstruct,
                             on_study=lambda r: out.print(f"study {r['study']}: {r['status']}"
                                                          + (f" ({r['error']})" if r.get("error") else "")))
        failed = sum(r["status"] == "failed" for r in rows)
        out.print(f"{len(rows)} studies: {sum(r['status'] == 'stored' for r in rows)} stored, "
                  f"{sum(r['status'].startswith('skipped') for r in rows)} skipped, {failed} failed")
        if failed:
            raise MedcnnError(f"{failed} of {len(rows)} studies failed (each named above)")
        return
    r = predict_study(run, url, study, series or None, checkpoint=checkpoint, engine=_engine(engine), rtstruct=rtstruct)
    for uid, s in r["stored"].items():
        out.print(f"study {study}: stored {s['modality']} series {uid} ({s['instances']} instances)")


@app.command()
def measure(mask: Path = typer.Argument(..., help="A label map (NIfTI, DICOM, PNG...)."),
            names: List[str] = typer.Option([], "--name", help="Label name: VALUE=NAME (repeatable)."),
            json_path: Optional[Path] = typer.Option(None, "--json", help="Write the measurements to this JSON file.")):
    """Size (mm³ / mm²), connected components, centroids and boxes of every label of a mask."""
    from medcnn.cli.measure import measure_file

    parsed = {}
    for n in names:
        k, sep, v = n.partition("=")
        if not sep or not k.strip().isdigit():
            raise MedcnnError(f"--name needs VALUE=NAME, got {n!r}")
        parsed[int(k)] = v
    measure_file(mask, parsed, json_path)


@app.command()
def compare(run: Path = typer.Argument(..., help="Segmentation run folder or zoo model."),
            before: Path = typer.Argument(..., help="The earlier scan."),
            after: Path = typer.Argument(..., help="The later scan."),
            checkpoint: str = typer.Option("best", help="best | last | path to a .ckpt."),
            json_path: Optional[Path] = typer.Option(None, "--json", help="Write the change table to this JSON file.")):
    """Segment two scans and report each label's change (absolute and %), for disease monitoring."""
    from medcnn.cli.measure import compare_scans
    from medcnn.tasks import run_task

    run = _run(run)
    run_task(run, "compare")
    compare_scans(run, before, after, json_path, checkpoint)


@app.command()
def augment(data: str = typer.Argument(..., help="Dataset (as for `plan`)."),
            preview_png: Path = typer.Option(..., "--preview", help="PNG to write: originals and augmented copies."),
            plan_file: Optional[Path] = typer.Option(None, "--plan", help="Plan YAML (default: planned from the data now)."),
            preset_name: Optional[str] = typer.Option(None, "--augment", help="Augmentation preset: none | light | default | heavy."),
            set_: List[str] = typer.Option([], "--set", help="Override plan fields, e.g. augment.bias_field=0.3 (repeatable)."),
            task: str = typer.Option("auto", help=TASK_HELP),
            degradation: Optional[str] = typer.Option(None, help=DEGRADATION_HELP),
            level: Optional[str] = typer.Option(None, help=LEVEL_HELP),
            samples: int = typer.Option(4, min=1, max=16, help="Training images (rows)."),
            views: int = typer.Option(5, min=1, max=10, help="Augmented copies per image (columns)."),
            seed: int = typer.Option(0, help="Random seed of the picks and the augmentations."),
            overwrite: bool = typer.Option(False, help="Replace an existing PNG.")):
    """Show what the plan's augmentation (or, for enhancement, its degradation) does to real training images."""
    from medcnn.plan import Plan
    from medcnn.tasks import task_of
    from medcnn.tasks.preview import write_preview
    from medcnn.transforms.augment import preset

    if preview_png.exists() and not overwrite:
        raise MedcnnError("exists; pass --overwrite or choose another file", preview_png)
    if plan_file is not None:
        p = Plan.load(plan_file)
        ds = task_of(p).load_data(data, p)
    else:
        ds, p = _default_plan(data, task, degradation, level)
    if preset_name is not None:
        p.augment = preset(preset_name)
    p = _override(p, set_)
    path = write_preview(task_of(p), p, ds, preview_png, samples=samples, views=views, seed=seed)
    out.print(f"wrote {path}")


@app.command()
def pretrain(data: List[str] = typer.Argument(..., help="Unlabeled image sources: MedMNIST names, .npz files, "
                                             "class folders or CSVs (their train/val splits; never test), folders "
                                             "of unlabelled images (all of them); or one segmentation dataset "
                                             "(its training cases and unlabelled imagesTs)."),
             out_dir: Path = typer.Option(..., "--out", help="Run folder: the backbone, usable as --pretrained RUN."),
             size: int = typer.Option(28, help="Image size of the pool (and of the classifiers it will seed)."),
             epochs: Optional[int] = typer.Option(None, help="Training epochs (default from the plan)."),
             max_minutes: Optional[float] = typer.Option(None, help="Time budget in minutes (0: none)."),
             max_per_source: int = typer.Option(0, help="At most this many images per source and split (0: all)."),
             channels: Optional[int] = typer.Option(None, help="1: grey, 3: colour (default: colour when every "
                                                    "source is colour)."),
             set_: List[str] = typer.Option([], "--set", help="Override plan fields (repeatable)."),
             overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
             progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar."),
             logger: List[str] = typer.Option([], help=LOGGER_HELP)):
    """Self-supervised pretraining: contrastive, of a classification backbone on pooled unlabeled 2D
    images; or, given a segmentation dataset, restoration (in-/out-painting) of the U-Net its
    segmentation plan trains, 2D or 3D."""
    from medcnn.tasks import get_task, train

    sets = list(set_) + [f"{k}={v}" for k, v in (("epochs", epochs), ("max_minutes", max_minutes)) if v is not None]
    ds, p, what = get_task("pretrain").prepare(list(data), size, max_per_source, channels)
    p = _override(p, sets)
    out.print(what)
    run = train(p, ds, out_dir, overwrite=overwrite, progress=progress, loggers=logger)
    use = data[0] if p.restores else "DATA"
    out.print(f"{'pretrained U-Net' if p.restores else 'backbone'} in {run} (use: medcnn train {use} --pretrained {run})")


@app.command()
def explain(run: Path = typer.Argument(..., help="Classification run folder or zoo model."),
            inputs: List[Path] = typer.Argument(..., help="Images (DICOM, NIfTI, PNG, ...)."),
            out_dir: Path = typer.Option(Path("explain"), "--out", help="Output folder."),
            method: str = typer.Option("gradcam", help="gradcam | occlusion"),
            class_name: Optional[str] = typer.Option(None, "--class", help="Explain this class (default: the predicted one)."),
            checkpoint: str = typer.Option("best", help="best | last | a .ckpt path.")):
    """Heat-maps of where a classifier looked (MONAI Grad-CAM / occlusion sensitivity), overlaid on each input."""
    from medcnn.infer.explain import explain_files
    from medcnn.tasks import load_model, run_task

    run = _run(run)
    run_task(run, "explain")
    for p in inputs:
        if not p.exists():
            raise MedcnnError("input not found", p)
    res = explain_files(load_model(run, checkpoint), list(inputs), out_dir, method, class_name)
    for r in res:
        out.print(f"{Path(r['file']).name}: {r['class']} (p={r['probability']:.3f}) -> {r['outputs']['png']}")


@app.command()
def export(run: Path = typer.Argument(..., help="Run folder (any task) or zoo model."),
           fmt: str = typer.Option("onnx", "--format", help="onnx (RUN/export/model.onnx) | monai-bundle "
                                   "(RUN/export/monai_bundle/: TorchScript network, metadata, inference config)."),
           checkpoint: str = typer.Option("best", help="best | last | a .ckpt path."),
           inputs: List[Path] = typer.Option([], "--inputs", help="Real images for the parity check (default: the "
                                             "run's validation images, when its data is at hand).")):
    """Write RUN/export/model.onnx (+ model.json: preprocessing, classes, windows), after checking on real
    inputs that ONNX Runtime and PyTorch agree within 1e-4; `medcnn predict RUN --engine onnx` then uses it.
    --format monai-bundle writes RUN/export/monai_bundle/ (TorchScript, same check), which MONAI alone runs."""
    from functools import partial

    from medcnn.export.monai_bundle import export_bundle
    from medcnn.export.onnx import export_run

    run = _run(run)
    if not run.is_dir():
        raise MedcnnError("run folder not found", run)
    export = export_bundle if fmt == "monai-bundle" else partial(export_run, fmt=fmt)
    rec = export(run, checkpoint, list(inputs) or None)
    par = rec["parity"]
    if fmt == "monai-bundle":
        out.print(f"{rec['path']} ({rec['bytes'] / 2**20:.1f} MB, {rec['task']}); parity on {par['inputs']}: max "
                  f"|TorchScript - PyTorch| {par['max_abs_diff']:.1e} ({par['what']}, tolerance {par['tolerance']:g})")
        return
    out.print(f"{run}/export/model.onnx ({rec['bytes'] / 2**20:.1f} MB, opset {rec['opset']}, {rec['task']}); "
              f"parity on {par['inputs']}: max |ONNX - PyTorch| {par['max_abs_diff']:.1e} "
              f"({par['what']}, tolerance {par['tolerance']:g})")


@app.command()
def serve(runs: List[Path] = typer.Argument(None, help="Run folders or zoo models to serve (any task; the first is "
                                              "the default). None: every zoo model."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; the default takes no connection from "
                                   "another machine. 0.0.0.0 exposes it to the network: put it behind a proxy with TLS."),
          port: int = typer.Option(8000, help="TCP port."),
          engine: str = typer.Option("torch", help="torch | onnx (ONNX Runtime; needs `medcnn export`; no heat-maps)."),
          checkpoint: str = typer.Option("best", help="best | last"),
          max_upload_mb: float = typer.Option(512, help="Largest upload accepted (MB); larger ones get 413."),
          retention: float = typer.Option(3600, "--retention-s", help="Seconds results are kept before deletion."),
          workers: int = typer.Option(1, help="Requests predicted at once (each model runs one at a time)."),
          max_queue: int = typer.Option(16, help="Requests in progress or waiting beyond which the server answers 503."),
          keep_phi: bool = typer.Option(False, "--keep-phi", help="DICOM results (SEG, derived series) keep the "
                                        "upload's patient name/ID/birth date. Default: emptied."),
          dicomweb: Optional[str] = typer.Option(None, help="A PACS's DICOMweb root URL: the workbench lists its "
                                                 "studies and runs a model on one, storing the results into it "
                                                 "(credentials: MEDCNN_DICOMWEB_USER / _PASSWORD or ~/.netrc).")):
    """Serve runs over HTTP: the web workbench at http://HOST:PORT/, the REST API under /v1 (POST /v1/predict,
    GET /v1/models), /health and /openapi.json. Uploads and results stay in a private temporary folder and
    are deleted after --retention-s."""
    import uvicorn

    from medcnn.serve.app import create_app
    from medcnn.serve.models import load_models
    from medcnn.zoo import names

    runs = [_run(r) for r in (runs or [Path(f"zoo:{n}") for n in names()])]
    if not runs:
        raise MedcnnError("no run folders given and no zoo models installed")
    models = load_models(runs, _engine(engine), checkpoint, keep_phi)
    api = create_app(models, max_upload_mb=max_upload_mb, retention_s=retention, workers=workers, max_queue=max_queue,
                     dicomweb=dicomweb)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out.print(f"serving {', '.join(f'{n} ({m.task})' for n, m in models.items())} at http://{host}:{port}/")
    uvicorn.run(api, host=host, port=port, log_level="info" if _state["debug"] else "warning")


def _run(run: Path) -> Path:
    """A run folder, or the checked copy of the zoo model ``run`` names (``medcnn.zoo``)."""
    from medcnn.zoo import resolve

    return resolve(run)


def _engine(engine: str) -> str:
    from medcnn.infer.onnx_net import ENGINES

    if engine not in ENGINES:
        raise MedcnnError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


@app.command()
def convert(data: str = typer.Argument(..., help="A segmentation dataset medcnn reads (MSD / nnU-Net folder, "
                                        "DRIVE-style or image + mask folders)."),
            out_dir: Path = typer.Option(..., "--out", help="New folder for the converted dataset."),
            to: str = typer.Option("nnunet", help="Format: nnunet (nnU-Net v2 raw: dataset.json, imagesTr/labelsTr, "
                                                  "imagesTs/labelsTs).")):
    """Write a segmentation dataset in another tool's layout (nnU-Net v2 raw)."""
    from medcnn.data.nnunet import describe, write_nnunet
    from medcnn.data.segmentation import load_segmentation

    if to != "nnunet":
        raise MedcnnError(f"unknown format {to!r} (nnunet)")
    dest = write_nnunet(load_segmentation(data), out_dir)
    out.print(f"nnU-Net dataset in {dest}: {describe(dest)}")


@app.command()
def models(pretrained: bool = typer.Option(False, "--pretrained", help="List the zoo's ready-to-use models only.")):
    """List the registered networks, the pretrained weights known by name (for --pretrained) and the zoo's
    ready-to-use models (for predict, evaluate, explain, export, serve and --pretrained)."""
    from medcnn.models import list_models
    from medcnn.transfer.catalog import WEIGHT_SETS

    _print_zoo()
    if pretrained:
        return
    out.print("\nnetworks:\n" + "\n".join(list_models()))
    out.print("\nnamed weights (--pretrained NAME; torchvision's names work too):")
    for ws in WEIGHT_SETS:
        out.print(f"  {ws.name:24s} {ws.model}: {ws.description}")


def _print_zoo() -> None:
    from medcnn.zoo import card, names

    t = Table(title="zoo models (medcnn predict NAME INPUT...; zoo:NAME always means the zoo)", show_header=True)
    t.add_column("name", no_wrap=True)  # the name is what users copy: never cut, the others wrap
    for c in ("task", "trained on", "test metric [95 % CI]", "MB"):
        t.add_column(c)
    for name in names():
        c = card(name)
        m = c["test"]
        t.add_row(name, c["task"], c["data"]["name"], f"{m['metric']} {m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]",
                  f"{c['bytes'] / 2**20:.1f}")
    out.print(t)


@app.command()
def tasks():
    """List the registered tasks (built in, and from plugins) and what their runs can do."""
    from medcnn.tasks import get_task, task_names

    t = Table(show_header=True)
    for c in ("task", "commands", "use"):
        t.add_column(c)
    for name in task_names():
        task = get_task(name)
        t.add_row(name, ", ".join(sorted(task.capabilities)) or "-", task.intended_use)
    out.print(t)


def _sized(data: str, size: Optional[int]) -> str:
    """``breastmnist`` + --size 64 -> ``breastmnist_64`` (MedMNIST names only)."""
    if size is None or Path(data).exists() or data.endswith((".npz", ".csv")):
        return data
    from medcnn.data.catalog import medmnist_flag

    flag, _ = medmnist_flag(data)
    return flag if size == 28 else f"{flag}_{size}"


def _print_fingerprint(fp: dict) -> None:
    if not fp:  # a plan without one (a plugin task's)
        return
    t = Table(title=f"fingerprint: {fp.get('name', '')}", show_header=False)
    for k, v in fp.items():
        if k in ("name", "source", "class_names"):
            continue
        t.add_row(k, json.dumps(v) if not isinstance(v, str) else v)
    out.print(t)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, prog_name="medcnn", standalone_mode=False)
    except MedcnnError as e:
        if debug:
            raise
        err.print(f"error: {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # usage errors carry their own exit codes
        usage, exit_, abort = _cli_exceptions()
        if isinstance(e, usage):
            e.show()
            return e.exit_code
        if isinstance(e, exit_):
            return e.exit_code
        if isinstance(e, abort):
            return 1
        raise
    return 0


def _cli_exceptions() -> tuple[type, type, type]:
    """(usage error, exit, abort) classes: typer >= 0.2x vendors click as ``typer._click``; older
    typer versions use click itself."""
    try:
        from typer._click.exceptions import ClickException
        from typer.exceptions import Abort, Exit
    except ImportError:
        from click.exceptions import Abort, ClickException, Exit
    return ClickException, Exit, Abort


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
