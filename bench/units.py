"""A benchmark longer than one session, finished over several: its finished units kept in the
repository in between.

A session here ends after at most three hours and takes its machine with it (/tmp, the run folders,
every process). A benchmark saves each finished unit (a classification seed, an application fold, a
pretrained backbone's timing) as a small JSON record in its OUT folder and reuses it while the code is
the same as at the record's commit (``common.load_reusable``). So a benchmark of many hours runs at one
pinned commit, in a git worktree, over several sessions:

    git worktree add --detach /tmp/wt C && cd /tmp/wt                     # C: the pinned commit
    python /work/main/bench/units.py restore lgg-apps /tmp/out --predictions bench/results/predictions
    python bench/applications.py --apps lgg --folds 2 3 --out /tmp/out    # the units this session has time for
    python /work/main/bench/units.py keep lgg-apps /tmp/out --predictions bench/results/predictions
    # commit bench/results/units/lgg-apps/ in the main checkout; the last session runs the whole
    # command, which reuses every unit, and lands its records in the main checkout:
    python /work/main/bench/units.py land lgg-apps /tmp/wt --records applications --where dataset=lgg \
        --predictions 'apps-lgg-*'

``keep`` copies OUT's unit records (JSON files carrying ``commit`` and ``plan_overrides``; run folders
and resume markers stay behind) and, with ``--predictions``, the per-case prediction files the units
wrote (those the worktree's commit does not hold as they are), to bench/results/units/NAME/; ``restore`` puts them back and names the commit they were
measured at, refusing a set that mixes commits. ``land`` moves the finished benchmark's records (those
of the worktree's bench/results/RECORDS.json that match ``--where``, all measured at the units'
commit) into the main checkout's file through the bench's own ``update_results``, copies the named
prediction files, and removes the kept units: their records have replaced them.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import common

ROOT = common.ROOT
UNITS = ROOT / "bench" / "results" / "units"


def unit_records(out: Path) -> list[Path]:
    """The finished-unit records under ``out``: JSON files with a commit and the plan overrides they
    were measured with, outside run folders (no plan.yaml beside them), not resume markers."""
    found = []
    for path in sorted(out.rglob("*.json")):
        if path.name.endswith(".started.json") or (path.parent / "plan.yaml").is_file():
            continue
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "commit" in rec and "plan_overrides" in rec:
            found.append(path)
    return found


def commits(folder: Path) -> set[str]:
    return {json.loads(p.read_text())["commit"] for p in unit_records(folder)}


def new_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that its git checkout does not hold as they are (new or changed): the
    predictions a session wrote, not those committed before; every file outside a git checkout."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file()]
    try:
        listed = subprocess.run(["git", "ls-files", "--others", "--modified", "--exclude-standard", "."], cwd=folder,
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return files
    return [folder / name for name in sorted(set(listed)) if (folder / name).is_file()]


def _copy_tree(files: list[Path], src: Path, dest: Path) -> None:
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def keep(name: str, out: Path, predictions: Path | None = None, units: Path = UNITS) -> Path:
    """OUT's unit records (and the prediction files, if given) into ``units/name``; returns it."""
    records = unit_records(out)
    if not records:
        raise SystemExit(f"{out}: no finished units (JSON records with commit and plan_overrides)")
    dest = units / name
    _copy_tree(records, out, dest / "out")
    if predictions is not None and predictions.is_dir():
        _copy_tree(new_files(predictions), predictions, dest / "predictions")
    found = commits(dest / "out")
    if len(found) > 1:
        print(f"warning: {dest} now holds units of several commits: {', '.join(sorted(found))}", file=sys.stderr)
    return dest


def restore(name: str, out: Path, predictions: Path | None = None, units: Path = UNITS) -> str:
    """Kept units back into OUT (and their prediction files into ``predictions``); returns the commit
    they were measured at, the one the benchmark must run at for them to be reused."""
    src = units / name
    if not (src / "out").is_dir():
        raise SystemExit(f"{src}: no kept units")
    found = commits(src / "out")
    if len(found) != 1:
        raise SystemExit(f"{src}: units of {len(found)} commits ({', '.join(sorted(found))}); keep one set per commit")
    _copy_tree([p for p in sorted((src / "out").rglob("*")) if p.is_file()], src / "out", out)
    if predictions is not None and (src / "predictions").is_dir():
        _copy_tree([p for p in sorted((src / "predictions").iterdir()) if p.is_file()], src / "predictions", predictions)
    return found.pop()


def land(name: str, worktree: Path, records: str, where: dict[str, str], predictions: list[str] = (),
         root: Path = ROOT) -> list[dict]:
    """The worktree's finished records of one benchmark into ``root``'s results; returns them.

    ``records``: the bench's name (bench/results/RECORDS.json, merged by bench/RECORDS.py's
    ``update_results``); ``where``: field values that pick the records (e.g. dataset=lgg), every one of
    which must carry the kept units' commit; ``predictions``: file-name patterns of the worktree's
    bench/results/predictions to copy. The kept units (root's bench/results/units/NAME) are removed."""
    kept = root / "bench" / "results" / "units" / name
    expected = commits(kept / "out") if (kept / "out").is_dir() else set()
    if len(expected) != 1:
        raise SystemExit(f"{kept}: no kept units of one commit to land")
    src = worktree / "bench" / "results" / f"{records}.json"
    if not src.is_file():
        raise SystemExit(f"{src}: no records; run the whole benchmark in the worktree first")
    picked = [r for r in json.loads(src.read_text()) if all(str(r.get(k)) == v for k, v in where.items())]
    if not picked:
        raise SystemExit(f"{src}: no record with {where}")
    stray = sorted({str(r.get("commit")) for r in picked} - expected)
    if stray:
        raise SystemExit(f"{src}: records of {', '.join(stray)} where the units were measured at {expected.pop()}")
    common.bench_module(records, root).update_results(root / "bench" / "results" / f"{records}.json", picked)
    preds = worktree / "bench" / "results" / "predictions"
    files = [p for p in sorted(preds.iterdir()) if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in predictions)] \
        if preds.is_dir() else []
    _copy_tree(files, preds, root / "bench" / "results" / "predictions")
    shutil.rmtree(kept)
    return picked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("keep", "restore", "land"))
    ap.add_argument("name", help="a name for the set of units, e.g. lgg-apps (bench/results/units/NAME)")
    ap.add_argument("out", type=Path, help="the benchmark's --out folder (land: the worktree)")
    ap.add_argument("--predictions", nargs="+", default=[],
                    help="keep/restore: the worktree's bench/results/predictions folder; land: file-name patterns in it")
    ap.add_argument("--records", help="land: the bench whose records move (bench/results/RECORDS.json)")
    ap.add_argument("--where", nargs="+", default=[], metavar="FIELD=VALUE", help="land: which records move")
    args = ap.parse_args()
    if args.action == "land":
        if not args.records or not args.where or any("=" not in w for w in args.where):
            ap.error("land needs --records and --where FIELD=VALUE")
        picked = land(args.name, args.out, args.records, dict(w.split("=", 1) for w in args.where), args.predictions)
        print(f"landed {len(picked)} records in bench/results/{args.records}.json and removed bench/results/units/"
              f"{args.name}; now run python bench/tables.py and commit")
        return
    folder = Path(args.predictions[0]) if args.predictions else None
    if args.action == "keep":
        dest = keep(args.name, args.out, folder)
        print(f"kept {len(unit_records(dest / 'out'))} units in {dest} (commit {', '.join(sorted(commits(dest / 'out')))})")
    else:
        c = restore(args.name, args.out, folder)
        print(f"restored into {args.out}; run the benchmark at commit {c} (git worktree add --detach DIR {c})")


if __name__ == "__main__":
    main()
