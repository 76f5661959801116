"""``medcnn predict`` for a segmentation run: per input a folder with mask.nii.gz, overlay.png,
measurements.json/.csv (and seg.dcm for a DICOM series, with rtstruct.dcm if asked). Inputs are only read, never written."""
from __future__ import annotations

from pathlib import Path

from medcnn.errors import InputError
from medcnn.infer.seg_outputs import save_measurements, save_overlay
from medcnn.infer.segmenter import Segmenter
from medcnn.io.channels import case_files, read_case
from medcnn.io.dicom_seg import write_dicom_seg
from medcnn.io.nifti import write_nifti
from medcnn.io.pil import write_png_mask
from medcnn.runs import RunFolder
from medcnn.tasks.base import OutputJob, Table


class SegmentJob(OutputJob):
    can_rtstruct = True

    def __init__(self, seg: Segmenter, run: Path, out_dir: Path | None, checkpoint: str = "best"):
        self.seg, self.run, self.checkpoint = seg, run, checkpoint
        self.out_dir = out_dir or RunFolder(run).predictions_dir
        self.names = {i: n for i, n in enumerate(seg.plan.class_names)}
        self.labels = list(range(1, seg.plan.num_classes))
        self.fields = ["unit"] + [f"{self.names[k]}_{c}" for k in self.labels for c in ("size", "components")] + ["outputs"]

    def inputs(self, paths: list[Path]) -> list[Path]:
        """One input per case: a model of several channels given as one file each (``CASE_0000`` ...)
        names the case by its first file, whichever of its files were listed."""
        channels = self.seg.plan.preprocessing.channels
        seen: set[Path] = set()
        firsts = [case_files(p, channels)[0] for p in paths]
        return [p for p in firsts if not (p in seen or seen.add(p))]

    def one(self, path: Path, dest: Path) -> dict:
        image = read_case(path, self.seg.plan.preprocessing.channels)
        return self.save(path, image, self.seg.segment(image).label, dest)

    def save(self, path: Path, image, label, dest: Path) -> dict:
        """Write one input's outputs into ``dest``; the result row (sizes, components, output files)."""
        dicom_series = (image.meta.get("format") == "dicom" and bool(image.meta.get("sop_instance_uids"))
                        and image.spatial_dims == 3)
        if self.rtstruct and not dicom_series:
            raise InputError("--rtstruct needs a DICOM series as input (contours reference its instances)", path)
        dest.mkdir(parents=True, exist_ok=True)
        files = {"mask": write_nifti(label, dest / "mask.nii.gz"),
                 "overlay": save_overlay(image, label, dest / "overlay.png")}
        if image.spatial_dims == 2:
            files["mask_png"] = write_png_mask(label, dest / "mask.png")
        report = save_measurements(label, self.names, dest / "measurements.json", dest / "measurements.csv",
                                   self.labels)
        files["measurements"] = dest / "measurements.json"
        if dicom_series:
            files["dicom_seg"] = write_dicom_seg(path, label, self.names, dest / "seg.dcm", source_image=image,
                                                 keep_phi=self.keep_phi)
            if self.rtstruct:
                from medcnn.io.dicom_rtstruct import write_rtstruct

                files["rtstruct"] = write_rtstruct(path, label, self.names, dest / "rtstruct.dcm", source_image=image,
                                                   keep_phi=self.keep_phi)
        return {"file": str(path), "outputs": {k: str(v) for k, v in files.items()},
                "sizes": {m["name"]: m["size_mm"] for m in report["labels"]}, "unit": report["unit"],
                "components": {m["name"]: m["n_components"] for m in report["labels"]}}

    def row(self, r: dict) -> dict:
        flat = {"file": r["file"], "unit": r.get("unit"), "outputs": r.get("outputs"), "error": r.get("error")}
        for name, size in r.get("sizes", {}).items():
            flat[f"{name}_size"], flat[f"{name}_components"] = size, r["components"][name]
        return flat

    def table(self, results: list[dict]) -> Table:
        t = Table(f"{self.run} ({self.checkpoint})", ["file", "label", "size", "components"],
                  notes=[f"outputs in {self.out_dir}"])
        for r in results:
            for name, size in r.get("sizes", {}).items():
                t.rows.append([Path(r["file"]).name, name, f"{size:.1f} {r['unit']}", str(r["components"][name])])
        return t
