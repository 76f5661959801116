"""DICOM Structured Reports of a model's results (TID 1500 measurement report, highdicom): the volume
of every segment of a DICOM SEG, or a classifier's finding with its calibrated probability. The
model is named as the observing device and as the measurements' algorithm (name and version: the
run's name and a hash of its weights), so a PACS shows who said what."""
from __future__ import annotations

from collections.abc import Sequence

import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from medcnn import __version__

MEDCNN_SCHEME = "99MEDCNN"  # a private coding scheme for the model's own class names
PROBABILITY = ("PROB", MEDCNN_SCHEME, "Probability")  # no standard code for a classifier's calibrated probability
IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging procedure")


def _context(model: str, version: str):
    import highdicom.sr as hsr

    device = hsr.DeviceObserverIdentifyingAttributes(uid=generate_uid(), name=model, manufacturer_name="medcnn",
                                                      model_name=f"medcnn {__version__}")
    return hsr.ObservationContext(observer_device_context=hsr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


TYPE2_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "StudyID", "AccessionNumber", "ReferringPhysicianName")
"""Attributes DICOM requires to be present (empty allowed), which the report copies from its evidence."""


def _report(evidence: Sequence[pydicom.Dataset], groups: list, model: str, version: str, description: str):
    import highdicom.sr as hsr

    for ds in evidence:  # sources that leave out a type-2 attribute (allowed on the wire by some writers)
        for keyword in TYPE2_PATIENT:
            if keyword not in ds:
                setattr(ds, keyword, "")

    report = hsr.MeasurementReport(observation_context=_context(model, version),
                                   procedure_reported=hsr.CodedConcept(*IMAGING_PROCEDURE), imaging_measurements=groups)
    sr = hsr.Comprehensive3DSR(evidence=list(evidence), content=report, series_instance_uid=generate_uid(),
                               series_number=9901, sop_instance_uid=generate_uid(), instance_number=1,
                               manufacturer="medcnn", is_complete=True, series_description=description)
    return sr


def segmentation_report(seg: pydicom.Dataset, sources: Sequence[pydicom.Dataset], volumes_mm3: dict[str, float],
                        model: str, version: str) -> pydicom.Dataset:
    """An SR with one volumetric group per segment of ``seg``: its volume in mm³."""
    import highdicom.sr as hsr

    algorithm = hsr.AlgorithmIdentification(name=model, version=version)
    numbers = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    groups = []
    for label, number in numbers.items():
        if label not in volumes_mm3:
            continue
        segment = hsr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                        segment_number=number,
                                        source_series=hsr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID))
        groups.append(hsr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hsr.TrackingIdentifier(uid=generate_uid(), identifier=f"{label} volume"),
            referenced_segment=segment, algorithm_id=algorithm,
            finding_type=hsr.CodedConcept(label.replace(" ", "_")[:16], MEDCNN_SCHEME, label),
            measurements=[hsr.Measurement(name=codes.SCT.Volume, value=float(volumes_mm3[label]),
                                          unit=codes.UCUM.CubicMillimeter, algorithm_id=algorithm)]))
    return _report([seg, *sources], groups, model, version, f"medcnn measurements ({model})")


def classification_report(findings: Sequence[tuple[pydicom.Dataset, str, float | None]], model: str,
                          version: str) -> pydicom.Dataset:
    """An SR with one group per image: the predicted class as a finding and its calibrated probability
    (none when the model did not predict, e.g. an input unlike its training data)."""
    import highdicom.sr as hsr

    algorithm = hsr.AlgorithmIdentification(name=model, version=version)
    groups = []
    for image, label, probability in findings:
        finding = hsr.CodedConcept(label.replace(" ", "_")[:16], MEDCNN_SCHEME, label)
        groups.append(hsr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hsr.TrackingIdentifier(uid=generate_uid(), identifier=f"{model} finding"),
            algorithm_id=algorithm, finding_type=finding,
            source_images=[hsr.SourceImageForMeasurementGroup.from_source_image(image)],
            measurements=None if probability is None else [hsr.Measurement(
                name=hsr.CodedConcept(*PROBABILITY), value=float(probability),
                unit=hsr.CodedConcept("1", "UCUM", "no units"), algorithm_id=algorithm)]))
    return _report([f[0] for f in findings], groups, model, version, f"medcnn findings ({model})")


def read_volumes(sr: pydicom.Dataset) -> dict[str, float]:
    """{segment label: volume in mm³} back from a segmentation report (for tests and users' scripts)."""
    return {_finding(g): float(_number(g, "Volume")) for g in _groups(sr) if _number(g, "Volume") is not None}


def read_findings(sr: pydicom.Dataset) -> list[tuple[str, float | None]]:
    """[(class, probability or None)] back from a classification report."""
    return [(_finding(g), _number(g, PROBABILITY[2])) for g in _groups(sr)]


def _finding(group) -> str:
    return next(i.ConceptCodeSequence[0].CodeMeaning for i in group.ContentSequence
                if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding")


def _number(group, name: str) -> float | None:
    return next((float(i.MeasuredValueSequence[0].NumericValue) for i in group.ContentSequence
                 if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == name), None)


def _groups(sr: pydicom.Dataset) -> list:
    items = []
    for item in sr.ContentSequence:
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements":
            items.extend(i for i in item.ContentSequence if i.ValueType == "CONTAINER")
    return items

