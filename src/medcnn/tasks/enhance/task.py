"""The enhancement task: what medcnn asks of it (:class:`medcnn.tasks.base.Task`)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from medcnn.data.enhance import EnhanceData, load_enhance
from medcnn.errors import MedcnnError
from medcnn.infer.enhancer import Enhancer
from medcnn.plan import Plan
from medcnn.planning.enhance import default_plan
from medcnn.runs import RunFolder
from medcnn.tasks.base import Table, Task, TrainingSetup, with_ci
from medcnn.tasks.enhance.evaluate import evaluate_enhance_run
from medcnn.tasks.enhance.export import graph, parity
from medcnn.tasks.enhance.module import EnhanceTask, build_enhance_network
from medcnn.tasks.enhance.outputs import EnhanceJob
from medcnn.train.enhance_data import degradation_for, enhance_loaders, load_slices, pixel_mm
from medcnn.transforms.degrade import KINDS
from medcnn.utils.files import zip_folder


class Enhance(Task):
    name = "enhance"
    intended_use = "Restores an image degraded as described (noise, low dose, sparse views, low resolution)."
    detect_order = 10  # --degradation names the task

    # ---- data and plan ------------------------------------------------------------------------
    def detect(self, data: str, options: argparse.Namespace) -> bool:
        return getattr(options, "degradation", None) is not None

    def check_options(self, options: argparse.Namespace) -> None:
        degradation = getattr(options, "degradation", None)
        if degradation is None:
            raise MedcnnError("--task enhance needs --degradation KIND (gaussian, rician, speckle, downsample, "
                              "lowdose-ct, sparse-view-ct)")
        if degradation not in KINDS + ("none",):
            raise MedcnnError(f"--degradation must be one of {', '.join(KINDS)}, or none (noisy images, "
                              f"self-supervised), got {degradation!r}")

    def load_data(self, data: str, plan: Plan | None = None) -> EnhanceData:
        return load_enhance(data)

    def default_plan(self, dataset: EnhanceData, source: str, options: argparse.Namespace) -> Plan:
        return default_plan(dataset, source, options.degradation, getattr(options, "level", None))

    def describe_plan(self, plan: Plan) -> str:
        en = plan.enhance
        pre = plan.preprocessing
        return (f"enhance ({en.degradation} {en.level}) with {plan.model.name} {plan.model.kwargs.get('filters')}, "
                f"patch {en.patch_size}, normalisation {pre.normalization} {pre.normalization_args or '(per image)'}, "
                f"batch {plan.batch_size}, {plan.epochs} epochs"
                + (f" or what fits {plan.max_minutes:g} min" if plan.max_minutes else ""))

    def describe_training(self, plan: Plan, dataset: EnhanceData, run_dir: Path) -> str:
        en = plan.enhance
        budget = f" (at most; cut to fit {plan.max_minutes:g} min)" if plan.max_minutes else ""
        return (f"training {plan.model.name} enhancement ({en.degradation} {en.level}) on {dataset.name} "
                f"({len(dataset.sources)} images), {plan.epochs} epochs{budget} -> {run_dir}")

    def describe_result(self, plan: Plan, info: dict) -> str:
        return f"done in {info['train_seconds']:.0f} s; best val PSNR {info['best_val_score']:.2f} dB"

    # ---- training ------------------------------------------------------------------------------------
    def setup(self, plan: Plan, dataset: EnhanceData, rank: int, world: int, batch: int, info: dict) -> TrainingSetup:
        train_loader, val_loader, val_pairs, split = enhance_loaders(plan, dataset, rank, world)
        n_extra = sum((split.get("extra_train") or {}).values())
        info["data_prepare_seconds"] = round(getattr(train_loader.dataset, "prepare_seconds", 0.0), 2)
        info["n"] = {"train_slices": len(train_loader.dataset.slices) - n_extra, "extra_train_slices": n_extra,
                     "val_slices": len(val_pairs),
                     **{f"{k}_sources": len(split[k]) for k in ("train", "val", "test")}}
        module = self.module(plan)
        module.val_pairs = val_pairs
        return TrainingSetup(module, train_loader, val_loader, [], split)

    def module(self, plan: Plan, previous=None) -> EnhanceTask:
        module = EnhanceTask(plan.to_dict())
        if previous is not None:
            module.val_pairs = previous.val_pairs
        return module

    def with_steps_per_epoch(self, plan: Plan, steps: int) -> Plan:
        en = dataclasses.replace(plan.enhance, patches_per_epoch=steps * plan.batch_size)
        return dataclasses.replace(plan, enhance=en)

    # ---- inference -----------------------------------------------------------------------------------------
    def out_channels(self, plan: Plan) -> int:
        return plan.preprocessing.channels

    def build_network(self, plan: Plan) -> torch.nn.Module:
        return build_enhance_network(plan)

    def inferer(self, plan: Plan, net: torch.nn.Module, folder: RunFolder | None, checkpoint: str,
                label: str = "") -> Enhancer:
        return Enhancer(plan, net, folder.path if folder else None)

    def output_job(self, model: Enhancer, run: Path, out_dir: Path | None, overwrite: bool, options: dict):
        return EnhanceJob(model, run, out_dir, options.get("checkpoint", "best"))

    # ---- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, run: Path, split: str = "test", checkpoint: str = "best", data: str | None = None,
                 **options) -> dict:
        return evaluate_enhance_run(self.load(run, checkpoint), run, split, checkpoint, data=data, **options)

    def report_table(self, run: Path, report: dict) -> Table:
        r = report
        t = Table(f"{run} — {r['split']} ({r['n_images']} images, {r['degradation']}, {r['checkpoint']} checkpoint)",
                  ["level", "method", "PSNR dB [95 % CI]", "SSIM", "ms / image"])
        for row in r["rows"]:
            t.rows.append([f"{row['level']:g}", row["method"], f"{row['psnr']:.2f}{with_ci(row, 'psnr', '.2f')}",
                           f"{row['ssim']:.4f}", f"{row['ms_per_image']:.1f}"])
            for key in [k for k in row if k.startswith("psnr_minus_") and not k.endswith("_ci95")]:
                t.notes.append(f"level {row['level']:g}: medcnn − {key[len('psnr_minus_'):]} = {row[key]:+.2f} dB"
                               f"{with_ci(row, key, '+.2f')} (paired over the same images and noise)")
        t.notes.append("95 % bootstrap intervals over images (medcnn.metrics.intervals)")
        return t

    # ---- export and service ---------------------------------------------------------------------------------------
    def export_graph(self, model: Enhancer):
        return graph(model)

    def parity(self, run: Path, model: Enhancer, twin: Enhancer, inputs: list[Path] | None) -> dict:
        return parity(run, model, twin, inputs)

    def card(self, plan: Plan) -> dict:
        en = plan.enhance
        return {"intended_use": self.intended_use, "classes": [],
                "degradation": {"kind": en.degradation, "level": list(en.level)}}

    def serve(self, job, path: Path, image, dest: Path, options: dict) -> dict:
        restored = job.enh.restore(image)
        row = job.save(path, image, restored, dest)
        files = {k: Path(v) for k, v in row["outputs"].items()}
        if "dicom" in files:  # a derived series is a folder: downloaded as one ZIP
            files["dicom"] = zip_folder(files["dicom"], dest / "restored_dicom.zip")
        return {"result": {"what": job.what, "mean_abs_change": row["mean_abs_change"],
                           "p99_abs_change": row["p99_abs_change"],
                           **({"warning": row["warning"]} if "warning" in row else {})},
                "files": files, "views": {"restored": ("image", restored, "image")}}

    def preview(self, plan: Plan, dataset: EnhanceData, samples: int, views: int, rng) -> dict:
        ids = [s.id for s in dataset.sources]
        picks = rng.choice(ids, size=samples, replace=len(ids) < samples)  # a single series gives several slices
        pairs = sorted({(str(sid), int(rng.integers(dataset.n_slices(sid)))) for sid in picks})
        slices = load_slices(plan, dataset, pairs)
        deg = degradation_for(plan, pixel_mm(dataset, ids))
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
        rows = []
        for s in slices:
            ys = [deg(s[None], gen)[0][0] for _ in range(views)]
            rows.append([s[0].numpy()] + [y[0].numpy() for y in ys])
        en = plan.enhance
        return {"rows": rows, "masks": [[None] * len(r) for r in rows],
                "titles": ["clean"] + [f"{en.degradation} {i + 1}" for i in range(views)],
                "what": f"{en.degradation} {en.level}"}
