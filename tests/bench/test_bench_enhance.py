"""The enhancement benchmark: case order (a case that starts from another case's model runs after it) and
the validation rule that picks the MR case of the README summary."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import enhance as bench  # noqa: E402


def test_a_case_runs_after_the_case_whose_model_it_starts_from():
    order = bench.run_order(list(bench.CASES))
    assert sorted(order) == sorted(bench.CASES)
    for case, source in bench.INIT.items():
        assert order.index(source) < order.index(case), (case, source)
    # asked alone, a case keeps its place (its source run is then expected in OUT already)
    assert bench.run_order(["ct-gaussian-mr", "mr-gaussian"]) == ["ct-gaussian-mr", "mr-gaussian"]


def test_the_mr_summary_case_is_chosen_on_validation_at_the_unseen_scans_pixel_size():
    recs = [{"case": "mr-lgg-gaussian", "best_val_psnr": 31.1, "val_psnr_zoom": {"1": 31.1, "2": 33.0, "3": 34.0}},
            {"case": "mr-lgg-gaussian-natural", "best_val_psnr": 31.3, "val_psnr_zoom": {"1": 31.3, "2": 32.5, "3": 33.6}},
            {"case": "bsd68-gaussian", "best_val_psnr": 40.0}]
    assert bench.chosen_mr_case(recs) == "mr-lgg-gaussian"  # higher mean over the zooms, lower at zoom 1
    del recs[0]["val_psnr_zoom"]  # a record without the measure: every candidate by its best val PSNR
    assert bench.chosen_mr_case(recs) == "mr-lgg-gaussian-natural"
    assert bench.chosen_mr_case(recs[2:]) is None
