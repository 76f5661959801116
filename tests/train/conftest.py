import pytest

from conftest import made_once

from .runs import run, train_cmd

NAMES = (("seed0", 0), ("seed0_again", 0), ("seed1", 1))


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory, breast_npz):
    """Uninterrupted single-process runs: seed 0 twice (determinism) and seed 1 (the seed-to-seed
    spread that a resumed or data-parallel run is measured against)."""
    def make(root):
        for name, seed in NAMES:
            run(train_cmd(breast_npz, root / name, seed))
        return tuple(root / name for name, _ in NAMES)

    paths = made_once(tmp_path_factory, "reference-runs", make)
    return {name: p for (name, _), p in zip(NAMES, paths)}
