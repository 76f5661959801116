"""`medcnn predict` over folders and CSV lists: streamed results, bad files as error rows, and a
batch that continues where a killed one stopped."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from medcnn.cli.main import main
from medcnn.io.inputs import expand_inputs


@pytest.fixture()
def image_tree(breast_npz, tmp_path):
    images = np.load(breast_npz)["test_images"][:7]
    root = tmp_path / "images"
    (root / "b").mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(root / ("b" if i >= 4 else "") / f"img{i}.png")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "notes.txt").write_text("not an image")
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_folder_batch_streams_rows_and_names_bad_files(breast_run, image_tree, tmp_path, capsys):
    res = tmp_path / "out" / "results.csv"
    assert main(["predict", str(breast_run), str(image_tree), "--results", str(res), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 8 inputs failed" in err and "Traceback" not in err
    rows = _rows(res)
    assert len(rows) == 8 and [r["file"].endswith("broken.png") for r in rows].count(True) == 1
    good = [r for r in rows if not r["error"]]
    assert len(good) == 7 and all(abs(float(r["p_malignant"]) + float(r["p_normal, benign"]) - 1) < 1e-4 for r in good)
    assert not any("notes.txt" in r["file"] for r in rows)


def test_killed_batch_continues_without_repeating_work(breast_run, image_tree, tmp_path, capsys):
    for f in image_tree.rglob("broken.png"):
        f.unlink()
    res = tmp_path / "results.jsonl"
    assert main(["predict", str(breast_run), str(image_tree), "--results", str(res), "--no-progress"]) == 0
    lines = res.read_text().splitlines()
    assert len(lines) == 7
    # as if killed while writing the 4th row: 3 whole rows and a torn one
    res.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    capsys.readouterr()
    assert main(["predict", str(breast_run), str(image_tree), "--results", str(res), "--no-progress"]) == 0
    assert "3 of 7 inputs already in" in capsys.readouterr().out
    again = [json.loads(x) for x in res.read_text().splitlines()]
    assert sorted(r["file"] for r in again) == sorted(json.loads(x)["file"] for x in lines)  # each once
    assert [r["p_malignant"] for r in again[:3]] == [json.loads(x)["p_malignant"] for x in lines[:3]]


def test_csv_list_of_paths_relative_to_the_list(breast_run, image_tree, tmp_path):
    lst = image_tree / "list.csv"
    lst.write_text("label,path\n0,img0.png\n1,b/img5.png\n")
    assert expand_inputs([lst]) == [image_tree / "img0.png", image_tree / "b" / "img5.png"]
    out = tmp_path / "p.json"
    assert main(["predict", str(breast_run), str(lst), "--json", str(out), "--no-progress"]) == 0
    assert len(json.loads(out.read_text())["results"]) == 2
    (image_tree / "bad.csv").write_text("path\n\n")
    assert main(["predict", str(breast_run), str(image_tree / "bad.csv")]) == 2


def test_dicom_folders_one_series_or_one_image_per_file(dicom_series_dir, tmp_path):
    from pydicom.data import get_testdata_file

    assert expand_inputs([dicom_series_dir]) == [dicom_series_dir]  # one series: one volume
    mixed = tmp_path / "radiographs"
    mixed.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), mixed / name)
    assert [p.name for p in expand_inputs([mixed])] == ["CT_small.dcm", "MR_small.dcm"]


def test_segmentation_batch_numbers_outputs_of_inputs_with_one_name(hippo_run, hippocampus_dir, tmp_path):
    case = sorted((hippocampus_dir / "imagesTs").glob("*.nii.gz"))[0]
    for d in ("a", "b"):
        (tmp_path / "in" / d).mkdir(parents=True)
        shutil.copy(case, tmp_path / "in" / d / "scan.nii.gz")
    out, res = tmp_path / "masks", tmp_path / "seg.csv"
    assert main(["predict", str(hippo_run), str(tmp_path / "in"), "--out", str(out), "--results", str(res),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["scan", "scan_2"]
    rows = _rows(res)
    assert len(rows) == 2 and rows[0]["Anterior_size"] == rows[1]["Anterior_size"] and rows[0]["unit"] == "mm3"
