"""Patient identity in DICOM: what medcnn keeps out of everything it writes unless asked.

Logs, reports (JSON/CSV/HTML), file names and service responses never carry these attributes.
DICOM outputs (SEG, derived series) are derived objects of the source study: they keep its
StudyInstanceUID, FrameOfReference and geometry, but their patient-identifying attributes are
emptied (Type 2) or removed (Type 3), and PatientIdentityRemoved is set, unless the user passes
``--keep-phi`` (then a PACS files them under the source patient, and reports gain the patient's
identifiers so results can be linked back).
"""
from __future__ import annotations

# attributes that identify the patient, the people involved, or the visit (after DICOM PS3.15's
# basic confidentiality profile, restricted to what a single-series export carries)
EMPTIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
           "AccessionNumber", "StudyID")  # Type 2 in the image and SEG IODs: present, may be empty
REMOVED = ("PatientBirthTime", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
           "PatientBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
           "PatientComments", "PatientAge", "PatientSize", "PatientWeight", "MilitaryRank", "BranchOfService",
           "MedicalRecordLocator", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
           "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
           "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord",
           "OperatorsName", "RequestingPhysician", "ReferringPhysicianAddress",
           "ReferringPhysicianTelephoneNumbers", "RequestAttributesSequence", "IssuerOfPatientID",
           "DeviceSerialNumber", "PatientState")

# what --keep-phi adds to a result record (report keys -> DICOM keywords)
LINK_FIELDS = {"patient_id": "PatientID", "patient_name": "PatientName", "patient_birth_date": "PatientBirthDate",
               "accession_number": "AccessionNumber", "study_date": "StudyDate"}


def deidentify(ds) -> None:
    """Empty or remove the identifying attributes of a pydicom Dataset (in place, in nested
    sequences too: e.g. ContributingEquipmentSequence names the institution) and say so."""
    from pydicom.datadict import tag_for_keyword

    emptied = {tag_for_keyword(k) for k in EMPTIED}
    removed = {tag_for_keyword(k) for k in REMOVED}

    def scrub(dataset, elem):
        if elem.tag in removed:
            del dataset[elem.tag]
        elif elem.tag in emptied:
            elem.value = ""

    ds.walk(scrub)
    ds.remove_private_tags()  # vendors' private elements may hold anything
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "medcnn: patient, physician and visit identifiers removed"


def link_fields(path) -> dict[str, str]:
    """The patient identifiers of a DICOM file or series folder, for ``--keep-phi`` reports ({} otherwise)."""
    from pathlib import Path

    import pydicom

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=list(LINK_FIELDS.values()))
        except Exception:  # noqa: BLE001 - not DICOM: no identifiers to link
            continue
        return {k: str(ds.get(kw) or "") for k, kw in LINK_FIELDS.items()}
    return {}
