"""Reports of the library (:class:`medcnn.tasks.Table`: title, columns, rows, notes) drawn on the terminal."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

out = Console()


def print_table(t) -> None:
    """The table (text columns right-aligned, the first left), then its notes."""
    rt = RichTable(title=t.title)
    for i, c in enumerate(t.columns):
        rt.add_column(c, justify="left" if i == 0 else "right")
    for row in t.rows:
        rt.add_row(*row)
    out.print(rt)
    for line in t.notes:
        out.print(line)
