"""The enhancement benchmark's case order: a case that starts from another case's model runs after it."""
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
