"""Declared report tables computed from the per-row tables (``OUT/rows/<eval>/<arm>.parquet``): a per-row
value grouped by a row column, "mean +/- std" over rows, one table column per group. Torch-free.

    [[report.tables]]
    title = "Per-foundation shift at +c"
    eval = "tiny-mfv"
    by = "foundation"                  # one column per value of this per-row column
    value = "wrongness"                # a per-row column, or a DataFrame.eval expression of columns
    transform = "logit"                # optional: logit clipped to [eps, 1 - eps] (eps = 0.01 unless given)
    delta = true                       # paired y(+c) - y(0) on the same row (row_id), per method
    # at = "zero" with delta = false:  one row, the unsteered model's absolute value

With ``delta``, each arm's rows are taken at its calibrated +c (or at ``coeff = 1.0``, a fixed coefficient),
paired with c = 0 on ``row_id``; seeds and null-band vectors of a method are averaged per row first, then
the mean and std are over the rows of each group. ``at = "zero"`` shows c = 0, which is the same unsteered
model for every arm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from steerlab.report_tables import BenchResults, method_labels

__all__ = ["UNSTEERED_LABEL", "row_group_table", "row_values"]

UNSTEERED_LABEL = "unsteered model (c = 0)"
TRANSFORMS = ("logit",)


def row_values(rows: pd.DataFrame, spec: dict[str, Any]) -> pd.Series:
    """The declared per-row value: a column, or a ``DataFrame.eval`` expression, then the transform."""
    expression = str(spec.get("value", "y"))
    if expression in rows.columns:
        values = rows[expression].astype(float)
    else:
        try:
            evaluated: Any = rows.eval(expression, engine="python")
            values = pd.Series(np.asarray(evaluated, dtype=float), index=rows.index)
        except Exception as error:  # noqa: BLE001 (any pandas parse/evaluation error: one line naming it)
            raise ValueError(
                f"[[report.tables]] {spec.get('title', '')!r}: value {expression!r} is neither a per-row "
                f"column nor an expression of them ({type(error).__name__}: {error}); columns: "
                f"{', '.join(map(str, rows.columns))}"
            ) from None
    transform = spec.get("transform")
    if transform is None:
        return values
    if transform not in TRANSFORMS:
        raise ValueError(f"[[report.tables]] transform must be one of {list(TRANSFORMS)}, got {transform!r}")
    eps = float(spec.get("eps", 0.01))
    p = values.clip(eps, 1 - eps).to_numpy(dtype=float)
    return pd.Series(np.log(p / (1 - p)), index=values.index)


def _cell(values: pd.Series) -> str:
    if values.empty:
        return ""
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    mean = float(values.mean())
    return f"{mean:+.3f} ± {std:.3f}" if math.isfinite(std) else f"{mean:+.3f}"


def _plus_coeff(arm_rows: pd.DataFrame, calibrated: float, fixed: float | None) -> float | None:
    positive = sorted(float(c) for c in arm_rows["coeff"].unique() if c > 0)
    if not positive:
        return None
    target = abs(fixed) if fixed is not None else calibrated
    if not math.isfinite(target):
        return positive[-1]
    best = min(positive, key=lambda p: abs(p - target))
    return best if fixed is None or math.isclose(best, target, rel_tol=1e-6) else None


def _calibrated_by_arm(results: BenchResults) -> dict[str, float]:
    frame = results.results.drop_duplicates(["method", "seed", "variant"])
    out: dict[str, float] = {}
    for row in frame.to_dict("records"):
        variant: Any = row["variant"]
        parts = [str(row["method"]), f"s{row['seed']}"] + ([] if pd.isna(variant) else [f"v{int(variant)}"])
        out["-".join(parts)] = float(row["calibrated_c"])
    return out


def row_group_table(results: BenchResults, spec: dict[str, Any]) -> pd.DataFrame:
    """One row per method (or one unsteered row), one column per group of ``by``: "mean ± std" over rows."""
    rows = results.rows(str(spec.get("eval")))
    by = str(spec.get("by"))
    if rows.empty or by not in rows.columns:
        return pd.DataFrame()
    rows = rows.assign(_value=row_values(rows, spec))
    groups = list(dict.fromkeys(sorted(rows[by].astype(str))))
    if not spec.get("delta", False):
        first = rows[rows["arm"] == rows["arm"].iloc[0]]
        if str(spec.get("at", "zero")) != "zero":
            raise ValueError(
                f"[[report.tables]] {spec.get('title', '')!r}: an absolute (delta = false) row table is "
                'taken at c = 0 (at = "zero"), the one model every arm shares'
            )
        zero = first[first["coeff"] == 0.0]
        row = {"method": UNSTEERED_LABEL}
        row |= {_title(g, zero, by): _cell(zero.loc[zero[by].astype(str) == g, "_value"]) for g in groups}
        return pd.DataFrame([row])
    calibrated = _calibrated_by_arm(results)
    fixed = float(spec["coeff"]) if "coeff" in spec else None
    per_method: dict[str, list[pd.Series]] = {}
    for arm, arm_rows in rows.groupby("arm", sort=False):
        c = _plus_coeff(arm_rows, calibrated.get(str(arm), math.nan), fixed)
        if c is None:
            continue
        wide = arm_rows.pivot_table(index="row_id", columns="coeff", values="_value")
        if 0.0 not in wide.columns:
            continue
        per_method.setdefault(str(arm_rows["method"].iloc[0]), []).append(wide[c] - wide[0.0])
    unique = rows.drop_duplicates("row_id")
    group_of = unique.set_index("row_id")[by].astype(str)
    labels = method_labels(results)  # in the results' method order
    out = []
    for method in [m for m in labels if m in per_method] + [m for m in per_method if m not in labels]:
        mean_delta = pd.concat(per_method[method], axis=1).mean(
            axis=1
        )  # seeds / null vectors averaged per row
        row = {"method": labels.get(method, method)}
        row |= {
            _title(g, unique, by): _cell(mean_delta[group_of.reindex(mean_delta.index) == g]) for g in groups
        }
        out.append(row)
    return pd.DataFrame(out)


def _title(group: str, rows: pd.DataFrame, by: str) -> str:
    """A group's column title with its row count, e.g. ``Care (n=22)``."""
    return f"{group} (n={int((rows[by].astype(str) == group).sum())})"
