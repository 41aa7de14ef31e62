"""Report tables declared as data by a bench config (``[[report.tables]]`` in a preset), so a preset can
reproduce a published table's columns without any name branch in report.py.

    [[report.tables]]
    title = "Daily dilemmas (honesty)"
    eval = "daily-dilemmas-honesty"
    columns = [
      { metric = "si_k2", label = "SI k=2" },
      { metric = "fix_rate", label = "fix %", scale = 100 },
      { metric = "mean_y", label = "bare y", at = "zero" },
      { field = "calibrated_c", label = "C" },
    ]

``metric`` is read from results.parquet at each arm's calibrated +c (``at = "plus"``, default), at c = 0
(``at = "zero"``) or at -c (``at = "minus"``); ``coeff = 1.0`` reads it at that fixed coefficient instead
(+1 or, with ``at = "minus"``, -1: a ``[coefficients] extra`` magnitude, or a prompt's own +/-1); a
column's ``eval`` reads another eval of the same method (e.g. off-task KL beside an effect); ``field`` is a
per-arm column (calibrated_c, calibrated_kl).
Cells are "value [low, high]" (the mean over seeds and the envelope of their CIs); null-band methods show
the mean [min, max] over vectors. A table with ``by`` instead of ``columns`` is computed from the per-row
tables (see `steerlab.report_rows`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from steerlab.report_tables import BenchResults, markdown_table, method_labels

__all__ = ["declared_table", "declared_tables_lines"]


def _pick(frame: pd.DataFrame, at: str, coeff: float | None = None) -> pd.DataFrame:
    c = frame["calibrated_c"].abs()
    if at == "zero":
        return frame[frame["coeff"] == 0.0]
    sign = -1.0 if at == "minus" else 1.0
    if coeff is not None:  # a fixed coefficient ([coefficients] extra, or a prompt's +/-1)
        return frame[np.isclose(frame["coeff"], sign * abs(coeff))]
    exact = frame[np.isclose(frame["coeff"], sign * c)]
    if len(exact):
        return exact
    side = frame[frame["coeff"] * sign > 0]  # no calibrated c (fixed policy): the largest |c| on that side
    return side[np.isclose(side["coeff"].abs(), side["coeff"].abs().max())] if len(side) else side


def _cell(values: pd.DataFrame, scale: float, null: bool, digits: int) -> str:
    if values.empty:
        return ""
    v = values["value"].to_numpy(dtype=float) * scale
    if null or len(values) > 1:
        low, high = (
            (v.min(), v.max()) if null else (values["ci_low"].min() * scale, values["ci_high"].max() * scale)
        )
        return f"{v.mean():.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    low, high = float(values["ci_low"].iloc[0]) * scale, float(values["ci_high"].iloc[0]) * scale
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{v[0]:.{digits}f}"
    return f"{v[0]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def declared_table(results: BenchResults, spec: dict[str, Any]) -> pd.DataFrame:
    """One row per method, one column per declared column."""
    frame = results.results[results.results["eval"] == spec.get("eval")]
    labels = method_labels(results)
    rows = []
    for method in dict.fromkeys(frame["method"]):
        mine = frame[frame["method"] == method]
        everywhere = results.results[results.results["method"] == method]
        null = method in results.null_methods
        row = {"method": labels.get(method, method)}
        for column in spec.get("columns", []):
            label = str(column.get("label", column.get("metric", column.get("field", "?"))))
            digits = int(column.get("digits", 3))
            if "field" in column:
                arms = mine.drop_duplicates(["seed", "variant"])
                value = float(arms[column["field"]].mean()) if column["field"] in arms else math.nan
                row[label] = f"{value:.{digits}g}" if math.isfinite(value) else ""
                continue
            source = everywhere[everywhere["eval"] == column["eval"]] if "eval" in column else mine
            coeff = float(column["coeff"]) if "coeff" in column else None
            values = _pick(
                source[source["metric"] == column.get("metric")], str(column.get("at", "plus")), coeff
            )
            row[label] = _cell(values, float(column.get("scale", 1.0)), null, digits)
        rows.append(row)
    return pd.DataFrame(rows)


def declared_tables_lines(results: BenchResults) -> list[str]:
    """Markdown for every ``[[report.tables]]`` of the run's config whose eval has results."""
    lines: list[str] = []
    from steerlab.report_rows import row_group_table  # tables of per-row values grouped by a row column

    for spec in results.config.get("report", {}).get("tables", []):
        table = row_group_table(results, spec) if "by" in spec else declared_table(results, spec)
        if table.empty:
            continue
        lines += [f"## {spec.get('title', spec.get('eval'))}", ""]
        if spec.get("note"):
            lines += [str(spec["note"]), ""]
        lines += [markdown_table(table), ""]
    return lines
