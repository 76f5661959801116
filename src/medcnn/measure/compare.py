"""Change of each label's measurements between two scans (disease monitoring)."""
from __future__ import annotations

from typing import Any

from medcnn.measure.components import LabelMeasurement


def _pct(before: float, after: float) -> float | None:
    return None if before == 0 else round(100.0 * (after - before) / before, 2)


def compare(before: list[LabelMeasurement], after: list[LabelMeasurement]) -> list[dict[str, Any]]:
    """Per label (union of both scans' labels): size and component count before / after, the
    absolute change and the change in % of the first scan (None when the label was absent before)."""
    b = {m.label: m for m in before}
    a = {m.label: m for m in after}
    rows = []
    for lab in sorted(set(b) | set(a)):
        mb, ma = b.get(lab), a.get(lab)
        sb, sa = (mb.size_mm if mb else 0.0), (ma.size_mm if ma else 0.0)
        cb, ca = (mb.n_components if mb else 0), (ma.n_components if ma else 0)
        rows.append({"label": lab, "name": (mb or ma).name, "size_before": sb, "size_after": sa,
                     "size_change": round(sa - sb, 3), "size_change_pct": _pct(sb, sa),
                     "components_before": cb, "components_after": ca, "components_change": ca - cb})
    return rows
