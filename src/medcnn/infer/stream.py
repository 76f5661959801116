"""Results streamed to a CSV or JSON Lines file, one row per input as soon as it is predicted, so a
crash or a kill loses nothing already written; run again with the same file and the inputs it
already holds are skipped (a torn last line is dropped first)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from medcnn.errors import ConfigError

FORMATS = (".csv", ".jsonl")


class ResultStream:
    def __init__(self, path: str | os.PathLike, fields: list[str]):
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in FORMATS:
            raise ConfigError(f"--results must end in {' or '.join(FORMATS)}", self.path)
        self.fields = ["file", *[f for f in fields if f != "file"], "error"]
        self.done: set[str] = set()
        if self.path.is_file():
            self._recover()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")
        if self.kind == ".csv":
            self._csv = csv.DictWriter(self._fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                self._csv.writeheader()
                self._flush()

    def _recover(self) -> None:
        """Remember the inputs already written; cut a last line that a kill left unfinished."""
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
            data = data[:cut]
        text = data.decode("utf-8", errors="replace")
        if self.kind == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and list(rows[0]) != self.fields:
                raise ConfigError("this results file has other columns (another run or task?); choose a new file",
                                  self.path)
            self.done = {r["file"] for r in rows if not r.get("error")}
        else:
            for line in text.splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if not r.get("error"):
                    self.done.add(str(r.get("file")))

    def _flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def write(self, row: dict[str, Any]) -> None:
        if self.kind == ".csv":
            self._csv.writerow({k: _cell(v) for k, v in row.items()})
        else:
            self._fh.write(json.dumps(row, default=str) + "\n")
        self._flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ResultStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cell(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return v
