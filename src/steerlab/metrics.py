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
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

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
# Surgical informedness. The helpers work along the last axis so bootstrap can pass (n_boot, n_rows).


def _cond_rate(event: NDArray[np.bool_], given: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """P(event | given) along the last axis and the count of `event & given`; 0 where `given` is empty."""
    num = np.sum(event & given, axis=-1).astype(float)
    den = np.sum(given, axis=-1).astype(float)
    rate = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return rate, num


def _arm_rates(y0: FloatArray, y_arm: FloatArray, toward_positive: bool) -> tuple[FloatArray, FloatArray]:
    """(gain, loss) rates of one steering arm.

    Forward arm (toward_positive): gain = fix = P(y+ > 0 | y0 < 0), loss = broke = P(y+ < 0 | y0 > 0).
    Reverse arm: gain = flip = P(y- < 0 | y0 > 0), loss = counter = P(y- > 0 | y0 < 0).
    """
    cho, rej = y0 > 0, y0 < 0
    if toward_positive:
        gain, _ = _cond_rate(y_arm > 0, rej)
        loss, _ = _cond_rate(y_arm < 0, cho)
    else:
        gain, _ = _cond_rate(y_arm < 0, cho)
        loss, _ = _cond_rate(y_arm > 0, rej)
    return gain, loss


def _penalty(*pmass: FloatArray) -> FloatArray:
    """min over arms of the mean answer mass, squared, times 100 (so SI reads as percentage points)."""
    means = [np.mean(np.asarray(p, dtype=float), axis=-1) for p in pmass]
    return np.minimum.reduce(means) ** 2 * 100.0


def _as_result(x: FloatArray) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def si_single(y0: ArrayLike, y_plus: ArrayLike, pmass_plus: ArrayLike, k: float = 1.0) -> Any:
    """Single-arm SI: ``(fix - k*broke) * mean(pmass+)^2 * 100``. Vectorised along the last axis."""
    y0_, yp = np.asarray(y0, dtype=float), np.asarray(y_plus, dtype=float)
    fix, broke = _arm_rates(y0_, yp, toward_positive=True)
    return _as_result((fix - k * broke) * _penalty(np.asarray(pmass_plus, dtype=float)))


def _both_arms(
    y0: ArrayLike, y_plus: ArrayLike, y_minus: ArrayLike, k: float
) -> tuple[FloatArray, FloatArray]:
    y0_ = np.asarray(y0, dtype=float)
    fix, broke = _arm_rates(y0_, np.asarray(y_plus, dtype=float), toward_positive=True)
    flip, counter = _arm_rates(y0_, np.asarray(y_minus, dtype=float), toward_positive=False)
    return fix - k * broke, flip - k * counter


def si_bidirectional(
    y0: ArrayLike,
    y_plus: ArrayLike,
    y_minus: ArrayLike,
    pmass_plus: ArrayLike,
    pmass_minus: ArrayLike,
    k: float = 1.0,
) -> Any:
    """Bidirectional SI: ``mean(SI_fwd, SI_rev) * min(mean pmass+, mean pmass-)^2 * 100``."""
    fwd, rev = _both_arms(y0, y_plus, y_minus, k)
    pen = _penalty(np.asarray(pmass_plus, dtype=float), np.asarray(pmass_minus, dtype=float))
    return _as_result((fwd + rev) / 2.0 * pen)


def si_best(
    y0: ArrayLike,
    y_plus: ArrayLike,
    y_minus: ArrayLike,
    pmass_plus: ArrayLike,
    pmass_minus: ArrayLike,
    k: float = 1.0,
) -> Any:
    """Best-arm SI: ``max(SI_fwd, SI_rev)`` with the same penalty as the bidirectional SI."""
    fwd, rev = _both_arms(y0, y_plus, y_minus, k)
    pen = _penalty(np.asarray(pmass_plus, dtype=float), np.asarray(pmass_minus, dtype=float))
    return _as_result(np.maximum(fwd, rev) * pen)


@dataclass(frozen=True)
class SurgicalInformedness:
    """All parts of the surgical-informedness computation for one (method, eval, coefficient).

    Rates are conditional probabilities; a rate whose conditioning set is empty (no chosen or no
    rejected rows at c=0) is defined as 0 and its count is 0, so nothing becomes NaN. Rows with
    ``y0 == 0`` exactly are in neither set. ``si_fwd_k*``/``si_rev_k*`` are unpenalised (rate units);
    ``si_k*``, ``si_best_k*`` and ``si_single_k*`` carry the pmass penalty and the factor 100.
    """

    n_rows: int
    n_cho: int
    n_rej: int
    n_fix: int
    n_broke: int
    n_flip: int
    n_counter: int
    fix: float
    broke: float
    flip: float
    counter: float
    pmass_plus: float
    pmass_minus: float
    si_fwd_k1: float
    si_rev_k1: float
    si_fwd_k2: float
    si_rev_k2: float
    si_k1: float
    si_k2: float
    si_best_k1: float
    si_best_k2: float
    si_single_k1: float
    si_single_k2: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict of all fields (for JSON and tables)."""
        return asdict(self)


def _paired_1d(name_arrays: dict[str, ArrayLike]) -> dict[str, FloatArray]:
    out = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in name_arrays.items()}
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"paired arrays must have equal length, got {lengths}")
    return out


def surgical_informedness(
    y0: ArrayLike,
    y_plus: ArrayLike,
    y_minus: ArrayLike,
    pmass_plus: ArrayLike,
    pmass_minus: ArrayLike,
) -> SurgicalInformedness:
    """Surgical informedness from paired per-row scores at c=0, +c and -c (see the class docstring)."""
    a = _paired_1d(
        {"y0": y0, "y_plus": y_plus, "y_minus": y_minus, "pmass_plus": pmass_plus, "pmass_minus": pmass_minus}
    )
    y0_, yp, ym = a["y0"], a["y_plus"], a["y_minus"]
    cho, rej = y0_ > 0, y0_ < 0
    fix, n_fix = _cond_rate(yp > 0, rej)
    broke, n_broke = _cond_rate(yp < 0, cho)
    flip, n_flip = _cond_rate(ym < 0, cho)
    counter, n_counter = _cond_rate(ym > 0, rej)
    pm_p, pm_m = float(np.mean(a["pmass_plus"])), float(np.mean(a["pmass_minus"]))
    pen2 = min(pm_p, pm_m) ** 2 * 100.0
    pen1 = pm_p**2 * 100.0
    fwd1, rev1 = float(fix - broke), float(flip - counter)
    fwd2, rev2 = float(fix - 2 * broke), float(flip - 2 * counter)
    return SurgicalInformedness(
        n_rows=len(y0_),
        n_cho=int(cho.sum()),
        n_rej=int(rej.sum()),
        n_fix=int(n_fix),
        n_broke=int(n_broke),
        n_flip=int(n_flip),
        n_counter=int(n_counter),
        fix=float(fix),
        broke=float(broke),
        flip=float(flip),
        counter=float(counter),
        pmass_plus=pm_p,
        pmass_minus=pm_m,
        si_fwd_k1=fwd1,
        si_rev_k1=rev1,
        si_fwd_k2=fwd2,
        si_rev_k2=rev2,
        si_k1=(fwd1 + rev1) / 2 * pen2,
        si_k2=(fwd2 + rev2) / 2 * pen2,
        si_best_k1=max(fwd1, rev1) * pen2,
        si_best_k2=max(fwd2, rev2) * pen2,
        si_single_k1=fwd1 * pen1,
        si_single_k2=fwd2 * pen1,
    )


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


def _delta_last(a: FloatArray, b: FloatArray) -> Any:
    return np.mean(a - b, axis=-1)


def _rate(event_fn: Callable[[FloatArray, FloatArray], Any], given_fn: Callable[[FloatArray], Any]):
    def stat(y0: FloatArray, y_arm: FloatArray) -> Any:
        return _cond_rate(event_fn(y0, y_arm), given_fn(y0))[0]

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
            add("delta_y", c, _delta_last, col["y"][c], col["y"][c0])
            add("delta_logratio", c, _delta_last, col["logratio"][c], col["logratio"][c0])

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


# ---------------------------------------------------------------------------------------------------------
# tiny-mfv helpers


def logit_clip(p: ArrayLike, eps: float = 0.01) -> Any:
    """``log(p'/(1-p'))`` with ``p'`` clipped to ``[eps, 1-eps]`` so certain answers stay finite."""
    q = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return _as_result(np.log(q / (1 - q)))


def wrongness(p_true_is_wrong: ArrayLike, p_true_is_acceptable: ArrayLike) -> Any:
    """Wrongness in [0, 1] from two probes: ``(p(wrong) + 1 - p(acceptable)) / 2``.

    Averaging a "is it wrong?" and a reversed "is it acceptable?" probe cancels a plain yes-bias.
    """
    pw = np.asarray(p_true_is_wrong, dtype=float)
    pa = np.asarray(p_true_is_acceptable, dtype=float)
    return _as_result((pw + 1 - pa) / 2)


def foundation_delta_logit(
    table: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    eps: float = 0.01,
) -> pd.DataFrame:
    """Per (foundation, coeff != 0): mean paired ``logit(wrongness at c) - logit(wrongness at 0)``.

    Rows are paired on (vignette_id, condition). Input columns: vignette_id, condition, foundation,
    coeff, wrongness. Returns columns foundation, coeff, delta_logit, ci_low, ci_high, n_rows.
    A positive value means steering made the model judge that foundation's violations more wrong.
    """
    need = ["vignette_id", "condition", "foundation", "coeff", "wrongness"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise KeyError(f"tiny-mfv table lacks columns {missing}; required: {need}")
    t = table[need].copy()
    t["coeff"] = t["coeff"].astype(float)
    t["row_id"] = t["vignette_id"].astype(str) + "|" + t["condition"].astype(str)
    t["logit"] = logit_clip(t["wrongness"].to_numpy(), eps=eps)
    wide = pivot_by_coeff(t, value="logit")
    if not any(c == 0.0 for c in wide.columns):
        raise ValueError(
            f"tiny-mfv table has no coeff 0 to pair against (coefficients: {list(wide.columns)})"
        )
    found = t.drop_duplicates("row_id").set_index("row_id")["foundation"]
    out = []
    for foundation in sorted(found.unique()):
        ids = found.index[found == foundation]
        sub = wide.loc[ids]
        for c in sub.columns:
            if c == 0.0:
                continue
            point, low, high = bootstrap_ci(
                _delta_last, sub[c].to_numpy(), sub[0.0].to_numpy(), n_boot=n_boot, seed=seed, alpha=alpha
            )
            out.append(
                {
                    "foundation": foundation,
                    "coeff": float(c),
                    "delta_logit": point,
                    "ci_low": low,
                    "ci_high": high,
                    "n_rows": len(sub),
                }
            )
    return pd.DataFrame(out, columns=["foundation", "coeff", "delta_logit", "ci_low", "ci_high", "n_rows"])
