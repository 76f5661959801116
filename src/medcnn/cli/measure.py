"""``medcnn measure`` and ``medcnn compare``: sizes of a label map, and their change between two scans."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from medcnn.errors import InputError

out = Console()


def measure_file(mask: Path, names: dict[int, str] | None, json_out: Path | None) -> dict:
    from medcnn.io import read_image
    from medcnn.measure.components import measure, to_dict

    img = read_image(mask)
    report = to_dict(measure(img, label_names=names), img)
    t = Table(title=f"{mask.name} ({report['unit']})")
    for c in ("label", "name", "size", "components", "largest centroid (RAS mm)"):
        t.add_column(c)
    for m in report["labels"]:
        c0 = m["components"][0]["centroid_ras_mm"] if m["components"] else []
        t.add_row(str(m["label"]), m["name"], f"{m['size_mm']:.1f}", str(m["n_components"]), " ".join(map(str, c0)))
    out.print(t)
    if json_out:
        from medcnn.utils.files import atomic_write_json

        atomic_write_json(json_out, report)
    return report


def compare_scans(run: Path, before: Path, after: Path, json_out: Path | None, checkpoint: str = "best") -> list[dict]:
    from medcnn.io import read_image
    from medcnn.measure import compare, measure
    from medcnn.tasks import load_model

    seg = load_model(run, checkpoint)
    names = {i: n for i, n in enumerate(seg.plan.class_names)}
    labels = list(range(1, seg.plan.num_classes))
    from medcnn.measure.components import unit as size_unit

    masks = [seg.segment(read_image(p)).label for p in (before, after)]
    units = {size_unit(m) for m in masks}
    if len(units) > 1:
        raise InputError(f"the two scans' sizes are in different units ({' vs '.join(sorted(units))}): "
                         "one file records its voxel size and the other does not", after)
    rows = compare(*(measure(m, label_names=names, labels=labels) for m in masks))
    unit = units.pop()
    t = Table(title=f"change {before.name} -> {after.name} ({unit})")
    for c in ("label", "before", "after", "change", "change %", "components"):
        t.add_column(c, justify="left" if c == "label" else "right")
    for r in rows:
        pct = "-" if r["size_change_pct"] is None else f"{r['size_change_pct']:+.1f} %"
        t.add_row(r["name"], f"{r['size_before']:.1f}", f"{r['size_after']:.1f}", f"{r['size_change']:+.1f}", pct,
                  f"{r['components_before']} -> {r['components_after']}")
    out.print(t)
    if json_out:
        from medcnn.utils.files import atomic_write_json

        atomic_write_json(json_out, {"run": str(run), "before": str(before), "after": str(after), "unit": unit,
                                     "labels": rows})
    return rows
