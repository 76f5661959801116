"""The README's result tables, made from the JSON records in bench/results/ and nowhere else.

    python bench/tables.py            rewrite every table between its README markers
    python bench/tables.py --check    exit 1 and name the tables that differ from their records

Each benchmark script owns its table (``table(records)``, ``START``/``END`` markers) and rewrites it
after a run; this script rebuilds all of them from the records alone, so a hand edit of a README
number, or of a record without its table, shows up (tests/bench/test_tables.py runs ``--check``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

BENCHES = ("classify", "segment", "enhance", "infer", "serve", "transfer", "scale", "domain")
"""bench/<name>.py, with its records in bench/results/<name>.json."""


def _bench_module(name: str):
    """bench/<name>.py, loaded by path: names such as ``infer`` or ``transfer`` are packages elsewhere
    (the tests' own) when this runs under pytest."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


def tables(results: Path = ROOT / "bench" / "results") -> dict[str, tuple[str, str, str]]:
    """{bench: (start marker, end marker, table text)} from the records."""
    out = {}
    for name in BENCHES:
        mod = _bench_module(name)
        records = json.loads((results / f"{name}.json").read_text())
        out[name] = (mod.START, mod.END, mod.table(records))
    return out


def readme_table(text: str, start: str, end: str) -> str | None:
    """The text between two markers (without the newlines next to them), or None when absent."""
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def differing(readme: Path = ROOT / "README.md") -> list[str]:
    """The benches whose README table is not the one their records give."""
    text = readme.read_text()
    return [name for name, (start, end, table) in tables().items() if readme_table(text, start, end) != table]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    if args.check:
        bad = differing(args.readme)
        for name in bad:
            print(f"{args.readme}: the bench-{name} table differs from bench/results/{name}.json "
                  f"(run: python bench/tables.py)", file=sys.stderr)
        return 1 if bad else 0
    import common

    for start, end, table in tables().values():
        common.update_readme(args.readme, start, end, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
