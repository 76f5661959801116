"""Atomic writes: whole files or none, with the usual permissions."""
import os
import stat

import pytest

from medcnn.utils.files import atomic_path, atomic_write_text


def test_atomic_write_has_umask_permissions_and_replaces(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.json", "one")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600: others can read results
        atomic_write_text(p, "two")
        assert p.read_text() == "two"
    finally:
        os.umask(old)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "b.txt", "kept")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "kept" and sorted(x.name for x in tmp_path.iterdir()) == ["b.txt"]
