"""A benchmark longer than a session: its finished units kept between sessions and put back."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import units  # noqa: E402


def _write(path: Path, rec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_units_are_kept_and_restored_without_run_folders_or_resume_markers(tmp_path):
    out, kept = tmp_path / "out", tmp_path / "units"
    unit = {"fold": 0, "commit": "abc1234", "plan_overrides": []}
    _write(out / "lgg" / "3d" / "fold0-test.json", unit)
    _write(out / "lgg" / "3d" / "fold0.started.json", {"commit": "abc1234", "plan_overrides": []})
    _write(out / "lgg" / "3d" / "fold0" / "run.json", {"commit": "abc1234", "plan_overrides": []})
    (out / "lgg" / "3d" / "fold0" / "plan.yaml").write_text("epochs: 1\n")
    _write(out / "lgg" / "3d" / "fold0-data" / "dataset.json", {"name": "links"})
    preds = tmp_path / "predictions"
    _write(preds / "apps-lgg-3d-cases.csv", "case,dice")

    dest = units.keep("lgg-apps", out, preds, units=kept)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "out/lgg/3d/fold0-test.json", "predictions/apps-lgg-3d-cases.csv"]

    fresh, fresh_preds = tmp_path / "next-session", tmp_path / "wt-predictions"
    assert units.restore("lgg-apps", fresh, fresh_preds, units=kept) == "abc1234"
    assert json.loads((fresh / "lgg" / "3d" / "fold0-test.json").read_text()) == unit
    assert (fresh_preds / "apps-lgg-3d-cases.csv").is_file()


def test_restore_refuses_units_of_two_commits_and_an_empty_keep_is_an_error(tmp_path):
    out, kept = tmp_path / "out", tmp_path / "units"
    _write(out / "a" / "seed0.json", {"commit": "abc1234", "plan_overrides": []})
    units.keep("mixed", out, units=kept)
    _write(out / "a" / "seed1.json", {"commit": "def5678", "plan_overrides": []})
    units.keep("mixed", out, units=kept)
    with pytest.raises(SystemExit, match="2 commits"):
        units.restore("mixed", tmp_path / "back", units=kept)
    with pytest.raises(SystemExit, match="no finished units"):
        units.keep("none", tmp_path / "empty", units=kept)


def test_only_the_predictions_a_session_wrote_are_kept(tmp_path):
    """In a worktree, the prediction files its commit already holds stay behind; new or changed ones go."""
    import subprocess

    preds = tmp_path / "wt" / "bench" / "results" / "predictions"
    preds.mkdir(parents=True)
    (preds / "committed.npz").write_text("old")
    (preds / "rewritten.csv").write_text("old")
    git = lambda *a: subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *a], cwd=tmp_path / "wt",  # noqa: E731
                                    check=True, capture_output=True)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "predictions of earlier runs")
    (preds / "rewritten.csv").write_text("new")
    (preds / "apps-lgg-3d-cases.csv").write_text("new")
    assert [p.name for p in units.new_files(preds)] == ["apps-lgg-3d-cases.csv", "rewritten.csv"]


def test_land_moves_the_finished_records_of_the_units_commit_and_removes_the_units(tmp_path):
    """The whole benchmark's records, measured at the kept units' commit, go into the main checkout's
    results through the bench's own merge; the units they replace are removed; a record of another
    commit is refused."""
    root, wt = tmp_path / "main", tmp_path / "wt"
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "toy.py").write_text(
        "import json\n"
        "def update_results(path, records):\n"
        "    old = json.loads(path.read_text()) if path.is_file() else []\n"
        "    merged = [r for r in old if r['dataset'] not in {x['dataset'] for x in records}] + records\n"
        "    path.write_text(json.dumps(merged))\n"
        "    return merged\n")
    _write(root / "bench" / "results" / "toy.json", [{"dataset": "lgg", "variant": "old", "commit": "0ld0000"},
                                                    {"dataset": "isic", "variant": "x", "commit": "0ld0000"}])
    _write(root / "bench" / "results" / "units" / "lgg-apps" / "out" / "lgg" / "fold0.json",
           {"commit": "abc1234", "plan_overrides": []})
    finished = [{"dataset": "lgg", "variant": "slices", "commit": "abc1234"},
                {"dataset": "idrid", "variant": "default", "commit": "abc1234"}]
    _write(wt / "bench" / "results" / "toy.json", finished)
    _write(wt / "bench" / "results" / "predictions" / "apps-lgg-slices-cases.csv", "case,dice")
    _write(wt / "bench" / "results" / "predictions" / "apps-idrid-default-cases.csv", "case,aupr")

    landed = units.land("lgg-apps", wt, "toy", {"dataset": "lgg"}, ["apps-lgg-*"], root=root)
    assert landed == finished[:1]
    assert json.loads((root / "bench" / "results" / "toy.json").read_text()) == [
        {"dataset": "isic", "variant": "x", "commit": "0ld0000"}, finished[0]]
    assert sorted(p.name for p in (root / "bench" / "results" / "predictions").iterdir()) == ["apps-lgg-slices-cases.csv"]
    assert not (root / "bench" / "results" / "units" / "lgg-apps").exists()

    _write(root / "bench" / "results" / "units" / "idrid-apps" / "out" / "fold0.json", {"commit": "def5678", "plan_overrides": []})
    with pytest.raises(SystemExit, match="records of abc1234"):
        units.land("idrid-apps", wt, "toy", {"dataset": "idrid"}, root=root)
