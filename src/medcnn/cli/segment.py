"""The segmentation side of the CLI: predict to files, evaluate tables, measure, compare."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from medcnn.errors import MedcnnError
from medcnn.io import image_suffixes

out = Console()


def check_plan_fits(p, ds) -> None:
    if p.num_classes != len(ds.labels):
        raise MedcnnError(f"the plan is for {p.num_classes} labels {p.class_names} but the data has "
                          f"{len(ds.labels)} {sorted(ds.labels.values())}")


def output_stem(path: Path) -> str:
    """The name of an input's output folder: its file or folder name without the image suffix;
    never empty, "." or ".." (``predict .. --out X`` must not write beside X)."""
    name = Path(path).resolve().name
    for suffix in image_suffixes():
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name if name.strip(". ") else "input"


def input_output_dir(out_dir: Path, path: Path, overwrite: bool, taken: set[str] | None = None) -> Path:
    """The output folder of one input (``out_dir/<input name>``, numbered when inputs of one job share a
    name); refuses to mix with earlier outputs."""
    stem = output_stem(path)
    if taken is not None:
        k, name = 1, stem
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        stem = name
    dest = out_dir / stem
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise MedcnnError("output folder exists; pass --overwrite or choose another --out", dest)
    return dest


class SegmentJob:
    """``medcnn predict`` for a segmentation run: per input a folder with mask.nii.gz, overlay.png,
    measurements.json/.csv (and seg.dcm for a DICOM series). Inputs are only read, never written."""

    keep_phi = False  # DICOM outputs keep the source's patient identity (medcnn.io.phi)

    def __init__(self, run: Path, out_dir: Path | None, checkpoint: str = "best", overwrite: bool = False,
                 engine: str = "torch"):
        from medcnn.infer.segmenter import Segmenter

        self.run, self.checkpoint, self.overwrite = run, checkpoint, overwrite
        self.seg = Segmenter.from_run(run, checkpoint, engine)
        self.out_dir = out_dir or run / "predictions"
        self.names = {i: n for i, n in enumerate(self.seg.plan.class_names)}
        self.labels = list(range(1, self.seg.plan.num_classes))
        self.fields = ["unit"] + [f"{self.names[k]}_{c}" for k in self.labels for c in ("size", "components")] + ["outputs"]

    def one(self, path: Path, dest: Path) -> dict:
        from medcnn.io import read_image

        image = read_image(path)
        return self.save(path, image, self.seg.segment(image).label, dest)

    def save(self, path: Path, image, label, dest: Path) -> dict:
        """Write one input's outputs into ``dest``; the result row (sizes, components, output files)."""
        from medcnn.infer.seg_outputs import save_measurements, save_overlay
        from medcnn.io.nifti import write_nifti

        dest.mkdir(parents=True, exist_ok=True)
        files = {"mask": write_nifti(label, dest / "mask.nii.gz"),
                 "overlay": save_overlay(image, label, dest / "overlay.png")}
        if image.spatial_dims == 2:
            from medcnn.io.pil import write_png_mask

            files["mask_png"] = write_png_mask(label, dest / "mask.png")
        report = save_measurements(label, self.names, dest / "measurements.json", dest / "measurements.csv",
                                   self.labels)
        files["measurements"] = dest / "measurements.json"
        if image.meta.get("format") == "dicom" and image.meta.get("sop_instance_uids") and image.spatial_dims == 3:
            from medcnn.io.dicom_seg import write_dicom_seg

            files["dicom_seg"] = write_dicom_seg(path, label, self.names, dest / "seg.dcm", source_image=image,
                                                 keep_phi=self.keep_phi)
        return {"file": str(path), "outputs": {k: str(v) for k, v in files.items()},
                "sizes": {m["name"]: m["size_mm"] for m in report["labels"]}, "unit": report["unit"],
                "components": {m["name"]: m["n_components"] for m in report["labels"]}}

    def row(self, r: dict) -> dict:
        flat = {"file": r["file"], "unit": r.get("unit"), "outputs": r.get("outputs"), "error": r.get("error")}
        for name, size in r.get("sizes", {}).items():
            flat[f"{name}_size"], flat[f"{name}_components"] = size, r["components"][name]
        return flat

    def table(self, results: list[dict]) -> None:
        t = Table(title=f"{self.run} ({self.checkpoint})")
        t.add_column("file"), t.add_column("label"), t.add_column("size", justify="right")
        t.add_column("components", justify="right")
        for r in results:
            for name, size in r.get("sizes", {}).items():
                t.add_row(Path(r["file"]).name, name, f"{size:.1f} {r['unit']}", str(r["components"][name]))
        out.print(t)
        out.print(f"outputs in {self.out_dir}")


def print_evaluation(run: Path, r: dict) -> None:
    how = f"{r['ensemble']} cross-validation members, each case out-of-fold" if r.get("out_of_fold") else \
        f"{r['checkpoint']} checkpoint" + (f" of {r['ensemble']} members" if r.get("ensemble", 1) > 1 else "")
    t = Table(title=f"{run} — {r['split']} ({r['n']} cases, {how}, post-processing {r['postprocess']['postprocess']})")
    for c in ("label", "Dice", "IoU", "HD95 mm", "ASSD mm", f"ref {r['size_unit']}", f"pred {r['size_unit']}", "size r"):
        t.add_column(c, justify="left" if c == "label" else "right")
    for name, v in r["per_label"].items():
        t.add_row(name, f"{v['dice']:.4f}", f"{v['iou']:.4f}", f"{v['hd95_mm']:.2f}", f"{v['assd_mm']:.2f}",
                  f"{v['ref_size_mean']:.0f}", f"{v['pred_size_mean']:.0f}", f"{v['size_correlation']:.3f}")
    out.print(t)
    line = f"mean Dice {r['dice_mean']:.4f}   inference {r['infer_s_per_case']:.2f} s/case"
    if "fov" in r:
        f = r["fov"]
        line += (f"   inside the field of view: AUC {f['auc']:.4f}  F1 {f['f1']:.4f}  ACC {f['acc']:.4f}  "
                 f"sens {f['sensitivity']:.4f}  spec {f['specificity']:.4f}")
    out.print(line + f"   -> {run / 'eval'}")


def measure_file(mask: Path, names: dict[int, str] | None, json_out: Path | None) -> dict:
    from medcnn.io import read_image
    from medcnn.measure.components import measure, to_dict

    img = read_image(mask)
    report = to_dict(measure(img, label_names=names), img.spatial_dims)
    t = Table(title=f"{mask.name} ({report['unit']})")
    for c in ("label", "name", "size", "components", "largest centroid (RAS mm)"):
        t.add_column(c)
    for m in report["labels"]:
        c0 = m["components"][0]["centroid_ras_mm"] if m["components"] else []
        t.add_row(str(m["label"]), m["name"], f"{m['size_mm']:.1f}", str(m["n_components"]), " ".join(map(str, c0)))
    out.print(t)
    if json_out:
        from medcnn.utils.files import atomic_write_json

        atomic_write_json(json_out, report)
    return report


def compare_scans(run: Path, before: Path, after: Path, json_out: Path | None, checkpoint: str = "best") -> list[dict]:
    from medcnn.infer.segmenter import Segmenter
    from medcnn.io import read_image
    from medcnn.measure import compare, measure

    seg = Segmenter.from_run(run, checkpoint)
    names = {i: n for i, n in enumerate(seg.plan.class_names)}
    labels = list(range(1, seg.plan.num_classes))
    ms = [measure(seg.segment(read_image(p)).label, label_names=names, labels=labels) for p in (before, after)]
    rows = compare(*ms)
    unit = "mm3" if seg.plan.spatial_dims == 3 else "mm2"
    t = Table(title=f"change {before.name} -> {after.name} ({unit})")
    for c in ("label", "before", "after", "change", "change %", "components"):
        t.add_column(c, justify="left" if c == "label" else "right")
    for r in rows:
        pct = "-" if r["size_change_pct"] is None else f"{r['size_change_pct']:+.1f} %"
        t.add_row(r["name"], f"{r['size_before']:.1f}", f"{r['size_after']:.1f}", f"{r['size_change']:+.1f}", pct,
                  f"{r['components_before']} -> {r['components_after']}")
    out.print(t)
    if json_out:
        from medcnn.utils.files import atomic_write_json

        atomic_write_json(json_out, {"run": str(run), "before": str(before), "after": str(after), "unit": unit,
                                     "labels": rows})
    return rows
