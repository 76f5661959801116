import pytest

from .runs import run, train_cmd


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory, breast_npz):
    """Uninterrupted single-process runs: seed 0 twice (determinism) and seed 1 (the seed-to-seed
    spread that a resumed or data-parallel run is measured against)."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, seed in (("seed0", 0), ("seed0_again", 0), ("seed1", 1)):
        run(train_cmd(breast_npz, root / name, seed))
        out[name] = root / name
    return out
