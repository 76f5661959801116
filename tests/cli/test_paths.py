"""predict writes only inside its output folder, whatever the inputs are called ("..", ".", names
from a CSV list with ../ parts); inputs are never written."""
import shutil
from pathlib import Path

import pydicom

from medcnn.cli.main import main


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_predict_writes_only_under_out(hippo_run, dicom_series_dir, tmp_path, monkeypatch):
    series = tmp_path / "data" / "series"
    series.mkdir(parents=True)
    by_z = sorted(dicom_series_dir.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    for f in by_z[9:15]:  # six neighbouring slices: a short series, quick to segment
        shutil.copy(f, series / f.name)
    (series / "sub").mkdir()
    out = tmp_path / "data" / "out"
    before = _tree(tmp_path)
    monkeypatch.chdir(series / "sub")
    assert main(["predict", str(hippo_run), "..", "--out", str(out)]) == 0  # the series, named ".."
    assert main(["predict", str(hippo_run), str(series / "sub" / ".."), "--out", str(out), "--overwrite"]) == 0
    listing = tmp_path / "data" / "list.csv"
    listing.write_text("path\n" + f"{series}/sub/../\n")
    assert main(["predict", str(hippo_run), str(listing), "--out", str(out / "from-csv")]) == 0
    after = _tree(tmp_path)
    new = {p for p in after if p not in before}
    assert new and all(p.startswith("data/out/") or p == "data/list.csv" for p in new), sorted(new)
    assert all(after[p] == t for p, t in before.items()), "an input was rewritten"
    assert (out / "series" / "mask.nii.gz").is_file() and (out / "series" / "seg.dcm").is_file()
