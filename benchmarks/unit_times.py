"""Unit times of bench runs from their OUT/bench.log: totals per kind of work, and the same unit side by side.

A bench log records each unit's wall time ("done  eval NAME-KEY in 7.0s") and each shared c = 0 baseline's
("shared baseline NAME-KEY ready in 2.6s"). Given one log this prints the seconds per kind of work
(extract, weight-steering extract, calibrate, eval per suite, baseline) and the model load; given two, it
also pairs units by name without their input hash (the same method, seed, variant and eval, even when code or
data changed their keys) and prints old seconds, new seconds and old / new.

    .venv/bin/python benchmarks/unit_times.py OLD/bench.log [NEW/bench.log]
"""

from __future__ import annotations

import argparse
import collections
import re
from datetime import datetime
from pathlib import Path

DONE = re.compile(r"done  (\w+) (\S+) in ([\d.]+)s")
BASELINE = re.compile(r"shared baseline (\S+) ready in ([\d.]+)s")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def unit_times(log: str) -> dict[tuple[str, str], float]:
    """(kind, unit name without its key) -> seconds, for every finished unit and shared baseline."""
    times: dict[tuple[str, str], float] = {}
    for line in log.splitlines():
        if match := DONE.search(line):
            times[(match.group(1), match.group(2).rsplit("-", 1)[0])] = float(match.group(3))
        elif match := BASELINE.search(line):
            times[("baseline", match.group(1).rsplit("-", 1)[0])] = float(match.group(2))
    return times


def model_load_seconds(log: str) -> float | None:
    """From the "loading model" line to the next timestamped line (conversion included on an empty cache)."""
    lines = log.splitlines()
    for number, line in enumerate(lines):
        if "loading model" in line and (start := STAMP.match(line)):
            for later in lines[number + 1 :]:
                if end := STAMP.match(later):
                    parse = lambda m: datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")  # noqa: E731
                    return (parse(end) - parse(start)).total_seconds()
    return None


EVAL_OF = re.compile(r"-s\d+(?:-v\d+)?-(.+)$")  # METHOD-sSEED[-vVARIANT]-EVAL


def kind_of(kind: str, name: str) -> str:
    """The kind of work a unit did: weight-steering extraction apart, evals per suite."""
    if kind == "extract" and name.startswith("ws-"):
        return "extract (weight steering)"
    if kind == "eval" and (match := EVAL_OF.search(name)):
        return f"eval {match.group(1)}"
    return kind


def summary(path: Path) -> dict[tuple[str, str], float]:
    log = path.read_text(encoding="utf-8")
    times = unit_times(log)
    totals: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter[str] = collections.Counter()
    for (kind, name), seconds in times.items():
        totals[kind_of(kind, name)] += seconds
        counts[kind_of(kind, name)] += 1
    print(f"{path}: {len(times)} units and baselines, {sum(times.values()) / 60:.1f} min of unit time")
    load = model_load_seconds(log)
    if load is not None:
        print(f"  {'model load':<32} {load:7.1f} s")
    for name in sorted(totals):
        print(f"  {name:<32} {totals[name]:7.1f} s over {counts[name]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help="one or two OUT/bench.log files (old, new)")
    args = parser.parse_args()
    if len(args.logs) > 2:
        parser.error("give one or two bench.log files")
    runs = [summary(path) for path in args.logs]
    if len(runs) == 2:
        old, new = runs
        print("same units: old s, new s, old / new")
        for key in sorted(set(old) & set(new)):
            ratio = old[key] / new[key] if new[key] > 0 else float("inf")
            print(f"  {key[0]:<9} {key[1]:<45} {old[key]:7.1f} {new[key]:7.1f}  {ratio:5.2f}x")


if __name__ == "__main__":
    main()
