"""Compare two bench output directories value by value: every eval unit done in both (matched by unit name,
whatever its input hash), its per-row scores and its summary metrics; then results.parquet when both have it.

    python benchmarks/compare_runs.py OUT_BEFORE OUT_AFTER [--atol 0] [--coeff-rtol 0]

Prints one line per unit (max |difference| of y / logratio / pmass over identical rows, and of every summary
metric) and a verdict. Exit status 1 when any value differs by more than --atol. Runs on partial (still
running or killed) bench directories too: only units finished in both are compared. Rows and metrics are
matched by coefficient; with ``--coeff-rtol R`` a coefficient of the second run within R (relative) of one of
the first counts as that one, for runs whose calibrations agree to float round-off but not bit for bit
(each |c| difference is still printed and counted against --atol unless it is within R).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def _units(out: Path) -> dict[str, Path]:
    """Finished eval units by name (the trailing input hash dropped)."""
    found = {}
    for folder in sorted((out / "units" / "eval").glob("*")):
        if (folder / "rows.parquet").is_file() and (folder / "summary.json").is_file():
            found[re.sub(r"-[0-9a-f]{16}$", "", folder.name)] = folder
    return found


def _calibrations(out: Path) -> dict[str, float]:
    """Calibrated |c| of every finished calibrate unit, by unit name."""
    found = {}
    for path in sorted((out / "units" / "calibrate").glob("*/calibration.json")):
        found[re.sub(r"-[0-9a-f]{16}$", "", path.parent.name)] = float(json.loads(path.read_text())["coeff"])
    return found


def _metrics(folder: Path) -> pd.DataFrame:
    document = json.loads((folder / "summary.json").read_text())
    summary = document.get("summary", document)
    frame = pd.DataFrame(summary["metrics"])
    return frame.set_index(["metric", "coeff"])[["value", "ci_low", "ci_high"]]


def _aligned(values: pd.Series, reference: pd.Series, rtol: float) -> pd.Series:
    """`values` with each one within `rtol` (relative) of a `reference` value replaced by that value."""
    if rtol <= 0:
        return values
    known = np.unique(reference.to_numpy(dtype=float))

    def nearest(value: float) -> float:
        if not len(known):
            return value
        candidate = float(known[np.argmin(np.abs(known - value))])
        return candidate if abs(candidate - value) <= rtol * abs(candidate) else value

    return values.map(nearest)


def _align_metrics(frame: pd.DataFrame, reference: pd.DataFrame, rtol: float) -> pd.DataFrame:
    flat = frame.reset_index()
    flat["coeff"] = _aligned(flat["coeff"], reference.reset_index()["coeff"], rtol)
    return flat.set_index(["metric", "coeff"])


def compare(before: Path, after: Path, atol: float, coeff_rtol: float = 0.0) -> int:
    a, b = _units(before), _units(after)
    common = sorted(set(a) & set(b))
    worst = 0.0
    print(f"{len(common)} eval units finished in both ({len(a)} in {before}, {len(b)} in {after})")
    for name in common:
        rows_a, rows_b = pd.read_parquet(a[name] / "rows.parquet"), pd.read_parquet(b[name] / "rows.parquet")
        rows_b["coeff"] = _aligned(rows_b["coeff"], rows_a["coeff"], coeff_rtol)
        key = ["row_id", "coeff"]
        merged = rows_a.merge(rows_b, on=key, suffixes=("_a", "_b"), how="outer", indicator=True)
        unmatched = int((merged["_merge"] != "both").sum())
        diffs = {}
        for column in ("y", "logratio", "pmass"):
            if f"{column}_a" in merged and f"{column}_b" in merged:
                d = (merged[f"{column}_a"] - merged[f"{column}_b"]).abs()
                diffs[column] = float(np.nanmax(d.to_numpy())) if len(d) else 0.0
        ma = _metrics(a[name])
        mb = _align_metrics(_metrics(b[name]), ma, coeff_rtol)
        shared = ma.index.intersection(mb.index)
        metric_diff = (
            float(np.nanmax((ma.loc[shared] - mb.loc[shared]).abs().to_numpy())) if len(shared) else 0.0
        )
        only = sorted(
            set(map(str, ma.index.get_level_values(0))) ^ set(map(str, mb.index.get_level_values(0)))
        )
        unit_worst = max([metric_diff, *diffs.values()])
        worst = max(worst, unit_worst)
        flag = "SAME" if unit_worst <= atol and unmatched == 0 else "DIFFERS"
        extra = f"; metrics in one run only: {only}" if only else ""
        print(
            f"{flag:8s} {name}: rows {len(rows_a)} vs {len(rows_b)} (unmatched {unmatched}); max |d| "
            + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
            + f"; summary metrics ({len(shared)}) {metric_diff:.3g}{extra}"
        )
    cal_a, cal_b = _calibrations(before), _calibrations(after)
    for name in sorted(set(cal_a) & set(cal_b)):
        d = abs(cal_a[name] - cal_b[name])
        if d > coeff_rtol * abs(cal_a[name]):
            worst = max(worst, d)
        print(
            f"{'SAME' if d <= atol else 'DIFFERS':8s} calibrate {name}: |c| {cal_a[name]:.6g} vs {cal_b[name]:.6g}"
        )
    if (before / "results.parquet").is_file() and (after / "results.parquet").is_file():
        ra, rb = pd.read_parquet(before / "results.parquet"), pd.read_parquet(after / "results.parquet")
        rb["coeff"] = _aligned(rb["coeff"], ra["coeff"], coeff_rtol)
        key = ["method", "seed", "variant", "eval", "coeff", "metric"]
        m = ra.merge(rb, on=key, suffixes=("_a", "_b"))
        d = float(np.nanmax((m["value_a"] - m["value_b"]).abs())) if len(m) else 0.0
        print(f"results.parquet: {len(ra)} vs {len(rb)} rows, {len(m)} matched, max |d value| {d:.3g}")
    print(f"verdict: max |difference| {worst:.3g} (atol {atol:g})")
    return 0 if worst <= atol else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--atol", type=float, default=0.0)
    parser.add_argument(
        "--coeff-rtol", type=float, default=0.0, help="match coefficients within this relative difference"
    )
    args = parser.parse_args()
    return compare(args.before, args.after, args.atol, args.coeff_rtol)


if __name__ == "__main__":
    sys.exit(main())
