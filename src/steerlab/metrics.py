"""Pure metric functions on per-row score tables (numpy + pandas, no torch).

A per-row table has one row per (row_id, coeff) with at least the columns ``row_id`` (str), ``coeff``
(float), ``y`` (signed so that ``y > 0`` means the positive pole was preferred), ``logratio`` and
``pmass`` (total probability on the answer groups). Everything here runs on saved results, so the
report can be rebuilt without a model.

Surgical informedness (SI) asks how many answers a steer *fixes* (moves across zero towards the target
pole) against how many it *breaks*, weighted by k, and penalised by the squared answer-probability mass
so that a steer which "wins" by pushing the model off the answer tokens does not score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DuplicateRowError",
    "RowMismatchError",
    "SurgicalInformedness",
    "aggregate_seeds",
    "bootstrap_ci",
    "check_same_rows",
    "delta",
    "delta_last",
    "foundation_delta_logit",
    "frac_low_pmass",
    "logit_clip",
    "mean_logratio",
    "mean_pmass",
    "pivot_by_coeff",
    "si_best",
    "si_bidirectional",
    "si_single",
    "summarise",
    "surgical_informedness",
    "wrongness",
]

from steerlab.reexport import reexporter  # noqa: E402
from steerlab.si import (  # noqa: E402  (SI lives in its own module; re-exported here)
    SurgicalInformedness,
    cond_rate,
    si_best,
    si_bidirectional,
    si_single,
    surgical_informedness,
)

FloatArray = NDArray[np.float64]
REQUIRED_COLUMNS = ("row_id", "coeff", "y", "logratio", "pmass")


class RowMismatchError(ValueError):
    """Two tables (or two coefficients of one table) do not cover the same rows."""


class DuplicateRowError(ValueError):
    """A (row_id, coeff) pair occurs more than once in a per-row table."""


# ---------------------------------------------------------------------------------------------------------
# Simple means


def _column(x: pd.DataFrame | ArrayLike, column: str) -> FloatArray:
    if isinstance(x, pd.DataFrame):
        if column not in x.columns:
            raise KeyError(f"table has no column {column!r}; columns are {list(x.columns)}")
        x = x[column]
    return np.asarray(x, dtype=float)


def mean_logratio(x: pd.DataFrame | ArrayLike) -> float:
    """Mean log-ratio: of the ``logratio`` column of a table, or of an array."""
    return float(np.mean(_column(x, "logratio")))


def mean_pmass(x: pd.DataFrame | ArrayLike) -> float:
    """Mean probability mass on the answer groups (low means the model left the answer format)."""
    return float(np.mean(_column(x, "pmass")))


def frac_low_pmass(pmass: pd.DataFrame | ArrayLike, threshold: float = 0.5) -> float:
    """Fraction of rows whose answer mass is below ``threshold`` (a coherence-loss alarm)."""
    return float(np.mean(_column(pmass, "pmass") < threshold))


def delta(y_plus: ArrayLike, y_zero: ArrayLike) -> float:
    """Mean paired difference ``y_plus - y_zero`` (rows must be aligned)."""
    a, b = np.asarray(y_plus, dtype=float), np.asarray(y_zero, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"delta needs paired arrays of equal shape, got {a.shape} and {b.shape}")
    return float(np.mean(a - b))


# ---------------------------------------------------------------------------------------------------------
# Bootstrap and seeds


def bootstrap_ci(
    stat_fn: Callable[..., Any],
    *arrays: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    vectorized: bool = True,
) -> tuple[float, float, float]:
    """Paired percentile bootstrap: ``(point, low, high)`` of ``stat_fn(*arrays)``.

    Row indices are resampled jointly across all arrays (they are paired per row), so correlations
    between arms are kept. With ``vectorized=True`` (default) ``stat_fn`` must reduce along the last
    axis (like ``np.mean(x, axis=-1)``); it is then called on ``(chunk, n_rows)`` matrices, which is
    fast. Pass ``vectorized=False`` for a statistic that only takes 1-D arrays (one call per resample).
    Deterministic for a given seed.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError(f"paired arrays must have equal length, got {[len(a) for a in arrs]}")
    if n == 0:
        raise ValueError("bootstrap_ci on zero rows")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    point = float(stat_fn(*arrs))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if vectorized:
        chunk = max(1, 4_000_000 // n)
        parts = []
        for start in range(0, n_boot, chunk):
            sub = idx[start : start + chunk]
            out = np.asarray(stat_fn(*[a[sub] for a in arrs]), dtype=float)
            if out.shape != (len(sub),):
                raise ValueError(
                    f"vectorized stat_fn returned shape {out.shape} for a ({len(sub)}, {n}) input; it must "
                    "reduce along the last axis, or pass vectorized=False"
                )
            parts.append(out)
        boots = np.concatenate(parts)
    else:
        boots = np.array([float(stat_fn(*[a[i] for a in arrs])) for i in idx])
    low, high = (
        np.nanquantile(boots, [alpha / 2, 1 - alpha / 2]) if np.isfinite(boots).any() else (np.nan,) * 2
    )
    return point, float(low), float(high)


def aggregate_seeds(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample std (ddof=1; NaN for one seed), sign agreement and count over seeds.

    ``sign_agreement`` is the fraction of seeds whose sign equals the sign of the mean: 1.0 means every
    seed points the same way as the average, 0.5 means the direction is a coin flip.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("aggregate_seeds needs at least one value")
    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    agreement = float(np.mean(np.sign(v) == np.sign(mean)))
    return {"mean": mean, "std": std, "sign_agreement": agreement, "n_seeds": int(v.size)}


# ---------------------------------------------------------------------------------------------------------
# Row identity


def _row_ids(x: pd.DataFrame | Iterable[Any]) -> set[str]:
    if isinstance(x, pd.DataFrame):
        if "row_id" not in x.columns:
            raise KeyError(f"table has no 'row_id' column; columns are {list(x.columns)}")
        x = x["row_id"]
    return {str(r) for r in x}


def _first(ids: Iterable[str], k: int = 5) -> list[str]:
    return sorted(ids)[:k]


def check_same_rows(
    a: pd.DataFrame | Iterable[Any],
    b: pd.DataFrame | Iterable[Any],
    name_a: str = "a",
    name_b: str = "b",
) -> None:
    """Raise `RowMismatchError` unless ``a`` and ``b`` (tables or row-id lists) hold the same row ids.

    Methods are only comparable on identical rows; the error says how many and which ids differ.
    """
    ia, ib = _row_ids(a), _row_ids(b)
    only_a, only_b = ia - ib, ib - ia
    if only_a or only_b:
        raise RowMismatchError(
            f"{name_a} and {name_b} do not hold the same rows: {len(only_a)} only in {name_a} "
            f"(first: {_first(only_a)}), {len(only_b)} only in {name_b} (first: {_first(only_b)})"
        )


def pivot_by_coeff(table: pd.DataFrame, value: str = "y") -> pd.DataFrame:
    """Wide table of ``value``: index = row_id, columns = coeff (sorted).

    Raises `DuplicateRowError` if a (row_id, coeff) pair repeats, and `RowMismatchError` if some
    coefficient lacks some rows (paired metrics would silently compare different rows otherwise).
    """
    for col in ("row_id", "coeff", value):
        if col not in table.columns:
            raise KeyError(f"table has no column {col!r}; columns are {list(table.columns)}")
    keys = pd.DataFrame({"row_id": table["row_id"].astype(str), "coeff": table["coeff"].astype(float)})
    dup = keys.duplicated(keep=False)
    if dup.any():
        pairs = keys[dup].drop_duplicates()
        examples = [(r, c) for r, c in pairs.itertuples(index=False)][:5]
        raise DuplicateRowError(f"{len(pairs)} (row_id, coeff) pairs occur more than once; first: {examples}")
    counts = keys.assign(n=1).pivot(index="row_id", columns="coeff", values="n")
    if counts.isna().any().any():
        parts = []
        for c in counts.columns:
            missing = counts.index[counts[c].isna()]
            if len(missing):
                parts.append(f"coeff {c:g} lacks {len(missing)} rows (first: {_first(missing)})")
        raise RowMismatchError("not every row has every coefficient: " + "; ".join(parts))
    wide = keys.assign(v=table[value].to_numpy()).pivot(index="row_id", columns="coeff", values="v")
    wide = wide.sort_index(axis=1)
    wide.columns.name = "coeff"
    return wide


# ---------------------------------------------------------------------------------------------------------
# Summary of one per-row table


def _mean_last(x: FloatArray) -> Any:
    return np.mean(x, axis=-1)


def _frac_low(x: FloatArray, threshold: float = 0.5) -> Any:
    return np.mean(x < threshold, axis=-1)


def delta_last(a: FloatArray, b: FloatArray) -> Any:
    """Mean paired difference along the last axis (a bootstrap statistic)."""
    return np.mean(a - b, axis=-1)


def _rate(event_fn: Callable[[FloatArray, FloatArray], Any], given_fn: Callable[[FloatArray], Any]):
    def stat(y0: FloatArray, y_arm: FloatArray) -> Any:
        return cond_rate(event_fn(y0, y_arm), given_fn(y0))[0]

    return stat


_RATES: dict[str, tuple[str, Callable[..., Any]]] = {
    "fix_rate": ("plus", _rate(lambda y0, y: y > 0, lambda y0: y0 < 0)),
    "broke_rate": ("plus", _rate(lambda y0, y: y < 0, lambda y0: y0 > 0)),
    "flip_rate": ("minus", _rate(lambda y0, y: y < 0, lambda y0: y0 > 0)),
    "counter_rate": ("minus", _rate(lambda y0, y: y > 0, lambda y0: y0 < 0)),
}


def summarise(
    table: pd.DataFrame,
    coeff_pos: float,
    coeff_neg: float | None = None,
    k_values: Sequence[float] = (1, 2),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    low_pmass_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Tidy summary of one per-row table (one method, one eval): a list of
    ``{"metric", "coeff", "value", "ci_low", "ci_high", "n_rows"}`` dicts, each with a paired bootstrap CI.

    Per coefficient: ``mean_y``, ``mean_logratio``, ``mean_pmass``, ``frac_low_pmass``; per non-zero
    coefficient: ``delta_y`` and ``delta_logratio`` vs c=0. At ``coeff_pos`` (the row's ``coeff``):
    ``fix_rate``, ``broke_rate``, ``si_single_k{k}``, and when a negative arm exists ``flip_rate``,
    ``counter_rate``, ``si_k{k}`` (bidirectional) and ``si_best_k{k}``. ``coeff_neg`` defaults to
    ``-coeff_pos`` when that coefficient is in the table, else only single-arm metrics are given.
    The table must contain c=0 and every coefficient for every row (see `pivot_by_coeff`).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"per-row table lacks columns {missing}; required: {list(REQUIRED_COLUMNS)}")
    wide = {v: pivot_by_coeff(table, v) for v in ("y", "logratio", "pmass")}
    coeffs = [float(c) for c in wide["y"].columns]
    n_rows = len(wide["y"])

    def need(c: float, what: str) -> float:
        for have in coeffs:
            if math.isclose(have, c, rel_tol=1e-9, abs_tol=1e-12):
                return have
        raise ValueError(f"{what} coefficient {c:g} is not in the table (coefficients: {coeffs})")

    c0 = need(0.0, "the unsteered (zero)")
    cp = need(float(coeff_pos), "coeff_pos")
    if coeff_neg is None:
        cn = next((c for c in coeffs if math.isclose(c, -cp, rel_tol=1e-9)), None) if cp != 0 else None
    else:
        cn = need(float(coeff_neg), "coeff_neg")

    rows: list[dict[str, Any]] = []

    def add(metric: str, coeff: float, fn: Callable[..., Any], *arrays: Any) -> None:
        point, low, high = bootstrap_ci(fn, *arrays, n_boot=n_boot, seed=seed, alpha=alpha)
        rows.append(
            {
                "metric": metric,
                "coeff": coeff,
                "value": point,
                "ci_low": low,
                "ci_high": high,
                "n_rows": n_rows,
            }
        )

    col = {v: {c: wide[v][c].to_numpy(dtype=float) for c in coeffs} for v in wide}
    for c in coeffs:
        add("mean_y", c, _mean_last, col["y"][c])
        add("mean_logratio", c, _mean_last, col["logratio"][c])
        add("mean_pmass", c, _mean_last, col["pmass"][c])
        add("frac_low_pmass", c, partial(_frac_low, threshold=low_pmass_threshold), col["pmass"][c])
    for c in coeffs:
        if c != c0:
            add("delta_y", c, delta_last, col["y"][c], col["y"][c0])
            add("delta_logratio", c, delta_last, col["logratio"][c], col["logratio"][c0])

    y0, yp, pp = col["y"][c0], col["y"][cp], col["pmass"][cp]
    for name, (arm, fn) in _RATES.items():
        if arm == "plus":
            add(name, cp, fn, y0, yp)
        elif cn is not None:
            add(name, cp, fn, y0, col["y"][cn])
    for k in k_values:
        tag = f"k{k:g}"
        add(f"si_single_{tag}", cp, partial(si_single, k=k), y0, yp, pp)
        if cn is not None:
            ym, pm = col["y"][cn], col["pmass"][cn]
            add(f"si_{tag}", cp, partial(si_bidirectional, k=k), y0, yp, ym, pp, pm)
            add(f"si_best_{tag}", cp, partial(si_best, k=k), y0, yp, ym, pp, pm)
    return rows


# The moral-foundations scores build on the functions above and import this module; re-exported lazily.
_FOUNDATIONS = "steerlab.moral_foundations"
__getattr__ = reexporter(
    __name__, {"foundation_delta_logit": _FOUNDATIONS, "logit_clip": _FOUNDATIONS, "wrongness": _FOUNDATIONS}
)

if TYPE_CHECKING:
    from steerlab.moral_foundations import foundation_delta_logit as foundation_delta_logit
    from steerlab.moral_foundations import logit_clip as logit_clip
    from steerlab.moral_foundations import wrongness as wrongness
