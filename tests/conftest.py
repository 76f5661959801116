"""Shared fixtures: real data from the mirror named by $MEDCNN_DATA.

A test whose dataset is absent skips with the reason on a user's machine, but fails in CI
(CI=true), so real-data tests cannot silently stop running.

`make test` runs the suite in two pytest-xdist worker processes. Each worker computes with one
thread (two workers share the two cores), and the trained runs the session fixtures make are made
once, by the first worker that needs them, then copied for each worker (tests write into them).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:  # before torch is imported: its thread pool takes its size from here
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"required test data missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("MEDCNN_DATA")
    if not root:
        _missing("MEDCNN_DATA is not set (point it at a copy of the data mirror)")
    p = Path(root)
    if not p.is_dir():
        _missing(f"MEDCNN_DATA={root} is not a folder")
    # absolute: tests link to the mirror's files from temporary folders and change directory
    os.environ["MEDCNN_DATA"] = str(p.resolve())
    return p.resolve()


def require(path: Path) -> Path:
    """Return ``path`` if it exists, else skip (fail in CI)."""
    if not path.exists():
        _missing(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def medmnist_dir(data_root) -> Path:
    return require(data_root / "medmnist")


@pytest.fixture(scope="session")
def dicom_series_dir(data_root) -> Path:
    return require(data_root / "dicom_mr_series_tcia_pgbm005")


@pytest.fixture(scope="session")
def hippocampus_dir(data_root) -> Path:
    return require(data_root / "msd_task04_hippocampus")


@pytest.fixture(scope="session")
def drive_dir(data_root) -> Path:
    return require(data_root / "drive")


@pytest.fixture(scope="session")
def lgg_dir(data_root) -> Path:
    return require(data_root / "lgg_mri_segmentation_112")


def mini_lgg(lgg_dir: Path, dest: Path, n: int = 5, n_test: int = 0) -> Path:
    """The first ``n`` LGG patients (three MR sequences, one file each) as an nnU-Net v2 folder of
    links; the last ``n_test`` of them as a labelled test set (imagesTs/ + labelsTs/)."""
    import shutil

    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (dest / sub).mkdir(parents=True)
    shutil.copy(lgg_dir / "dataset.json", dest / "dataset.json")
    for i, lab in enumerate(sorted((lgg_dir / "labelsTr").glob("*.nii.gz"))[:n]):
        suffix = "Ts" if i >= n - n_test else "Tr"
        (dest / f"labels{suffix}" / lab.name).symlink_to(lab)
        case = lab.name[: -len(".nii.gz")]
        for f in sorted((lgg_dir / "imagesTr").glob(f"{case}_000?.nii.gz")):
            (dest / f"images{suffix}" / f.name).symlink_to(f)
    return dest


def made_once(tmp_path_factory, name: str, make):
    """``make(folder)`` run once per test session; returns what it returned (paths inside ``folder``).

    Without workers: ``make`` into a fresh temporary folder. Under pytest-xdist: the first worker
    makes it in the session's shared folder, under a file lock; every worker gets its own copy."""
    if not WORKER:
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "made-once"
    shared.mkdir(exist_ok=True)
    made, done = shared / name, shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(made, ignore_errors=True)  # what a failed attempt of another worker left
            made.mkdir()
            result = make(made)
            several = isinstance(result, tuple)
            rel = [str(Path(p).relative_to(made)) for p in (result if several else [result])]
            done.write_text(json.dumps({"tuple": several, "paths": rel}))
    own = tmp_path_factory.mktemp(name)
    shutil.copytree(made, own, symlinks=True, dirs_exist_ok=True)
    spec = json.loads(done.read_text())
    paths = [own / p for p in spec["paths"]]
    return tuple(paths) if spec["tuple"] else paths[0]


@pytest.fixture(scope="session")
def breast_npz(medmnist_dir) -> Path:
    return require(medmnist_dir / "breastmnist.npz")


@pytest.fixture(scope="session")
def breast_run(tmp_path_factory, breast_npz) -> Path:
    """A real 2-epoch BreastMNIST run shared by the predictor/evaluate/CLI tests."""
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks import train

    def make(folder: Path) -> Path:
        data = load_classification(str(breast_npz))
        plan = default_plan(data, str(breast_npz)).override(["epochs=2", "ensemble=1", "tta=none"])
        return train(plan, data, folder / "breast", progress=False)

    return made_once(tmp_path_factory, "breast-run", make)


@pytest.fixture(scope="session")
def adrenal_run(tmp_path_factory, medmnist_dir) -> Path:
    """A real 1-epoch AdrenalMNIST3D run (96 training and validation volumes): the 3D classifier the
    engine and CLI tests share."""
    from medcnn.data.classification import load_classification
    from medcnn.planning import default_plan
    from medcnn.tasks import train

    def make(folder: Path) -> Path:
        data = load_classification(str(require(medmnist_dir / "adrenalmnist3d.npz")))
        for s in ("train", "val"):
            data.images[s], data.labels[s] = data.images[s][:96], data.labels[s][:96]
        plan = default_plan(data, "adrenalmnist3d").override(["epochs=1", "batch_size=32"])
        return train(plan, data, folder / "adrenal", progress=False)

    return made_once(tmp_path_factory, "adrenal-run", make)


@pytest.fixture(scope="session")
def hippo_run(tmp_path_factory, hippocampus_dir) -> Path:
    """A real, briefly trained MSD Hippocampus segmentation run (a few dozen patches)."""
    from medcnn.data.segmentation import load_segmentation
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import train

    def make(folder: Path) -> Path:
        data = load_segmentation(hippocampus_dir)
        plan = default_plan(data, str(hippocampus_dir)).override(
            ["epochs=2", "segment.patches_per_epoch=24", "segment.tta_flips=false", "segment.val_every=2",
             "segment.split={test_fraction: 0.04, val_fraction: 0.05, fold: null}",
             # hippocampus is 1 mm already; native spacing keeps the DICOM series test (0.7 x 0.7 x 6.5 mm) small
             "segment.target_spacing=[]", "segment.sw_overlap=0.25"])
        return train(plan, data, folder / "hippo", progress=False)

    return made_once(tmp_path_factory, "hippo-run", make)


@pytest.fixture(scope="session")
def lgg_run(tmp_path_factory, lgg_dir) -> tuple[Path, Path]:
    """(run, dataset folder): a three-sequence LGG segmentation run, one short epoch on five patients."""
    from medcnn.data.segmentation import load_segmentation
    from medcnn.planning.segment import default_plan
    from medcnn.tasks import train

    def make(folder: Path) -> tuple[Path, Path]:
        root = mini_lgg(lgg_dir, folder / "lgg", n=5)
        data = load_segmentation(root)
        plan = default_plan(data, str(root)).override(
            ["epochs=1", "segment.patches_per_epoch=4", "max_minutes=0", "segment.tta_flips=false",
             "segment.split={test_fraction: 0.2, val_fraction: 0.25, fold: null}"])
        return train(plan, data, folder / "run", progress=False), root

    return made_once(tmp_path_factory, "lgg-run", make)


@pytest.fixture(scope="session")
def mr_dir(hippocampus_dir) -> Path:
    """Unlabelled real MR volumes (MSD hippocampus imagesTs)."""
    return require(hippocampus_dir / "imagesTs")


@pytest.fixture(scope="session")
def enhance_run(mr_dir, tmp_path_factory) -> Path:
    """A real 3-epoch MR denoising run (gaussian 25/255) shared by the enhancement and export tests."""
    from medcnn.cli.main import main

    def make(folder: Path) -> Path:
        run = folder / "denoise"
        rc = main(["train", str(mr_dir), "--degradation", "gaussian", "--level", "25/255", "--out", str(run),
                   "--epochs", "3", "--no-progress", "--set", "enhance.patches_per_epoch=768", "--set", "max_minutes=0"])
        assert rc == 0
        return run

    return made_once(tmp_path_factory, "enhance-run", make)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for the browser tests (`make install` installs it)."""
    import shutil

    path = os.environ.get("MEDCNN_CHROMIUM", "/usr/bin/chromium")
    if shutil.which(path) is None:
        _missing(f"Chromium not found at {path} (`make install` installs Debian's chromium)")
    return path


# identifying values written into a copy of the real TCIA series: none may leave medcnn unless asked
PHI = {"PatientName": "Sentinel^Phiona", "PatientID": "PHI7391MRN", "PatientBirthDate": "19230405",
       "OtherPatientIDs": "PHIOTHER55", "PatientAddress": "12 Sentinel Road", "AccessionNumber": "PHIACC0042",
       "InstitutionName": "Sentinel General Hospital", "ReferringPhysicianName": "Sentinelle^Doctor"}
PHI_STRINGS = ("Phiona", "PHI7391MRN", "19230405", "PHIOTHER55", "Sentinel Road", "PHIACC0042", "Sentinel General",
               "Sentinelle")


@pytest.fixture(scope="session")
def phi_series(dicom_series_dir, tmp_path_factory) -> Path:
    """The real TCIA MR series with the patient, visit and institution attributes set to known values
    (folder study/series, names neutral)."""
    import pydicom

    folder = tmp_path_factory.mktemp("phi") / "study" / "series"
    folder.mkdir(parents=True)
    for f in sorted(dicom_series_dir.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for kw, value in PHI.items():
            setattr(ds, kw, value)
        ds.save_as(folder / f.name)
    return folder


def phi_leaks(texts=(), folders=()) -> list[str]:
    """Where any PHI string appears: in the given texts, or in the names or bytes (gunzipped where
    compressed) of every file under the folders."""
    import gzip

    found = []
    for i, t in enumerate(texts):
        found += [f"text {i}: {s}" for s in PHI_STRINGS if s in t]
    for folder in folders:
        for p in Path(folder).rglob("*"):
            found += [f"name {p}: {s}" for s in PHI_STRINGS if s in p.name]
            if p.is_file():
                raw = p.read_bytes()
                if raw[:2] == b"\x1f\x8b":
                    raw = gzip.decompress(raw)
                found += [f"file {p}: {s}" for s in PHI_STRINGS if s.encode() in raw]
    return found
