"""Where ``medcnn predict`` writes the files of one input: ``OUT/<input name>``."""
from __future__ import annotations

from pathlib import Path

from medcnn.errors import MedcnnError
from medcnn.io import image_suffixes


def output_stem(path: Path) -> str:
    """The name of an input's output folder: its file or folder name without the image suffix;
    never empty, "." or ".." (``predict .. --out X`` must not write beside X)."""
    name = Path(path).resolve().name
    for suffix in image_suffixes():
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name if name.strip(". ") else "input"


def input_output_dir(out_dir: Path, path: Path, overwrite: bool, taken: set[str] | None = None) -> Path:
    """The output folder of one input (``out_dir/<input name>``, numbered when inputs of one job share a
    name); refuses to mix with earlier outputs."""
    stem = output_stem(path)
    if taken is not None:
        k, name = 1, stem
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        stem = name
    dest = out_dir / stem
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise MedcnnError("output folder exists; pass --overwrite or choose another --out", dest)
    return dest
