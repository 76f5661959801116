"""The workbench's PACS panel (``medcnn serve --dicomweb URL``): the server's studies, a served model
run on one of them with the PACS round trip of ``medcnn predict --dicomweb`` (medcnn.pacs.roundtrip),
and what was stored, read back from the PACS and drawn like an upload's result: the stored SEG over
its series, the stored derived series beside its source, the stored report's findings.

Study rows carry no patient identity (UID, date, description, modalities); credentials come from the
environment or ~/.netrc, as for the command line.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from medcnn.errors import InputError
from medcnn.io import read_image
from medcnn.pacs.client import Pacs


class PacsPanel:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def studies(self, query: str = "", limit: int = 50) -> list[dict]:
        """Studies matching the QIDO-RS ``query`` (``Modality=MR&StudyDate=2024...``; empty: all)."""
        return Pacs(self.url).study_rows(dict(parse_qsl(query)), limit)

    def predict(self, model, study: str, dest: Path) -> dict[str, Any]:
        """Run ``model`` (a ServedModel) on the study's image series, store the results into the study,
        and read back what was stored for the page (views of the first series, written into ``dest``)."""
        from medcnn.pacs.roundtrip import predict_study

        done = predict_study(model.run, self.url, study, checkpoint=model.checkpoint, engine=model.engine)
        pacs = Pacs(self.url)
        stored = [{"modality": s["modality"], "series": uid, "instances": s["instances"],
                   "url": f"{self.url}/studies/{study}/series/{uid}"} for uid, s in done["stored"].items()]
        with tempfile.TemporaryDirectory(prefix="medcnn-pacs-view-") as tmp:
            source = pacs.fetch_series(study, done["series"][0], Path(tmp) / "source")
            image = read_image(source)
            result, views = self._read_back(pacs, model, study, image, stored, Path(tmp))
            drawn = model.draw(image, views, dest)
        return {"input": {"dimensions": f"{image.spatial_dims}D", "shape": list(image.spatial_shape),
                          "spacing_mm": [round(s, 4) for s in image.spacing], "modality": image.meta.get("modality")},
                "result": result, "views": drawn, "stored": stored, "predicted_series": done["series"]}

    def _read_back(self, pacs: Pacs, model, study: str, image, stored: list[dict], tmp: Path):
        """(result, views) from the stored objects that belong to the shown series."""
        from medcnn.io.dicom_seg import read_dicom_seg
        from medcnn.io.dicom_sr import read_findings
        from medcnn.measure.components import measure, to_dict

        names = list(model.plan.class_names)
        uids = set(image.meta.get("sop_instance_uids") or [])
        for s in stored:
            if s["modality"] == "SEG":
                seg = pacs.client.retrieve_series(study, s["series"])[0]
                if {r.ReferencedSOPInstanceUID for r in _referenced(seg)} <= uids:
                    label = read_dicom_seg(seg, image, dict(enumerate(names)))
                    report = to_dict(measure(label, label_names=dict(enumerate(names)),
                                             labels=list(range(1, len(names)))), label)
                    return report, {"mask": ("mask", label, names)}
            elif s["modality"] == "SR" and model.task == "classify":
                findings = read_findings(pacs.client.retrieve_series(study, s["series"])[0])
                counts = {n: sum(f[0] == n for f in findings) for n in dict.fromkeys(f[0] for f in findings)}
                return {"findings": [{"prediction": f, "probability": p} for f, p in findings], "counts": counts}, {}
            elif s["modality"] not in ("SR", "SEG", "RTSTRUCT"):  # a derived series: the restored image
                restored = read_image(pacs.fetch_series(study, s["series"], tmp / "derived"))
                change = np.abs(restored.array.astype(np.float64) - image.array)
                return ({"what": "stored derived series", "mean_abs_change": round(float(change.mean()), 4),
                         "p99_abs_change": round(float(np.percentile(change, 99)), 4)},
                        {"restored": ("image", restored, "image")})
        raise InputError(f"study {study}: nothing stored that the workbench can show", self.url)


def _referenced(seg):
    return [r for item in seg.get("ReferencedSeriesSequence", []) for r in item.get("ReferencedInstanceSequence", [])]

