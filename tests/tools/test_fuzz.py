"""A short fuzz campaign (``make fuzz`` runs the long one): mutated real DICOM, NIfTI, PNG and npz
files through every reader and through predict (classifier and segmenter) end in success or
medcnn's own one-line error; never another exception, a hang, a crash or a memory blow-up."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import fuzz  # noqa: E402


def test_harness_reports_each_kind_of_failure():
    """Planted failures, so that the campaign below can fail."""
    worker = fuzz.Worker({}, threads=1)
    try:
        # the hang is reported at its timeout; the others get time to show themselves on a busy machine
        results = {kind: worker.run(f"selftest:{kind}", Path("."), timeout=3 if kind == "hang" else 60,
                                    max_rss_mb=worker.base_rss + 600)
                   for kind in ("raise", "hang", "memory", "crash")}
    finally:
        worker.stop()
    assert results["raise"][0] == "finding" and "ValueError: planted bug" in results["raise"][1]
    assert results["hang"] == ("finding", "hang: no answer in 3 s")
    assert results["memory"][0] == "finding" and results["memory"][1].startswith("memory blow-up")
    assert results["crash"] == ("finding", "worker died (exit code 3)")


def test_short_campaign_finds_nothing(breast_run, hippo_run, data_root, tmp_path):
    seeds = fuzz.collect_seeds(data_root, tmp_path / "seeds", max_dicom=25)
    assert {s.kind for s in seeds} == {"dicom", "nifti", "png", "npz", "series"}
    report = fuzz.fuzz(seeds, {"classify": str(breast_run), "segment": str(hippo_run)}, seconds=15, seed=0,
                       out=tmp_path / "out", timeout=60, log=lambda *a: None)
    d = report.as_dict()
    assert not d["findings"], d["findings"][:3]
    assert d["executions"] >= 25, d
    assert set(d["by_target"]) == {"read", "classify", "segment", "npz"}, d["by_target"]
    errors = sum(t["clean_error"] for t in d["by_target"].values())
    assert 0 < errors < d["executions"], d["by_target"]  # the mutants are broken, and not all of them
