"""Checkpoints load only with ``torch.load(..., weights_only=True)``: a checkpoint that carries a
pickled payload (here: one that creates a file when unpickled) is refused with one clear line by
every command that reads checkpoints, and the payload never runs."""
import shutil
import subprocess
import sys
from pathlib import Path

import torch


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling calls Path(marker).touch()
        return (self.marker.touch, ())


def _poison(ckpt: Path, marker: Path) -> None:
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    obj["callbacks"] = {"innocent-looking": _Payload(marker)}
    torch.save(obj, ckpt)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medcnn", *args], capture_output=True, text=True, timeout=300)


def _refused(done: subprocess.CompletedProcess, path: Path) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "refused" in lines[0] and path.name in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_pickled_payload_is_refused_everywhere(breast_run, breast_npz, tmp_path):
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    shutil.copytree(breast_run, run)
    for name in ("best.ckpt", "last.ckpt"):
        _poison(run / "checkpoints" / name, marker)

    # the payload is live: an unsafe load runs it (so the test below can fail)
    torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert marker.exists()
    marker.unlink()

    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (28, 28), 128).save(image)
    _refused(_cli("predict", str(run), str(image)), run / "checkpoints" / "best.ckpt")
    _refused(_cli("train", "--resume", str(run), "--no-progress"), run / "checkpoints" / "last.ckpt")
    _refused(_cli("train", str(breast_npz), "--out", str(tmp_path / "t"), "--epochs", "1", "--set", "ensemble=1",
                  "--pretrained", str(run / "checkpoints" / "best.ckpt")), run / "checkpoints" / "best.ckpt")
    _refused(_cli("export", str(run)), run / "checkpoints" / "best.ckpt")
    assert not marker.exists()
