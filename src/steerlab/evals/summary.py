"""Summaries of per-row eval tables: `metrics.summarise` at the right coefficients, plus rate metrics.

Every summary is a dict with ``metrics`` (tidy rows ``{metric, coeff, value, ci_low, ci_high, n_rows}``,
each with a paired bootstrap CI) and whatever extra tables a suite adds (e.g. per-foundation deltas).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from steerlab.metrics import bootstrap_ci, summarise

__all__ = ["pick_coeff_pos", "rate_rows", "standard_summary"]


def pick_coeff_pos(coeffs: list[float]) -> float:
    """The arm the single-arm metrics are taken at: the largest positive coefficient (0 if none)."""
    positive = [c for c in coeffs if c > 0]
    return max(positive) if positive else 0.0


def standard_summary(
    table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, **_: Any
) -> dict[str, Any]:
    """`metrics.summarise` of the table at the largest positive coefficient (and its negative, if scored)."""
    coeffs = sorted(float(c) for c in table["coeff"].unique())
    if 0.0 not in coeffs:
        raise ValueError(
            f"the summary needs the unsteered coefficient 0 in the table (coefficients: {coeffs}); add 0 to coeffs"
        )
    coeff_pos = pick_coeff_pos(coeffs)
    rows = summarise(table, coeff_pos, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"metrics": rows, "coeff_pos": coeff_pos, "n_rows": int(table["row_id"].nunique())}


def rate_rows(
    table: pd.DataFrame,
    metric: str,
    mask: pd.Series | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    **_: Any,
) -> list[dict[str, Any]]:
    """Per coefficient: the percentage of rows where ``mask`` holds, with a bootstrap CI over rows."""
    flags = np.asarray(mask, dtype=float)
    out = []
    for coeff in sorted(float(c) for c in table["coeff"].unique()):
        sel = table["coeff"].to_numpy(dtype=float) == coeff
        values = flags[sel] * 100.0
        point, low, high = bootstrap_ci(
            lambda x: np.mean(x, axis=-1), values, n_boot=n_boot, seed=seed, alpha=alpha
        )
        out.append(
            {
                "metric": metric,
                "coeff": coeff,
                "value": point,
                "ci_low": low,
                "ci_high": high,
                "n_rows": int(sel.sum()),
            }
        )
    return out
