"""Is a difference between two methods real? Hierarchical paired bootstrap across seeds and rows, Holm
correction, seed-level agreement, and per-row steerability (how many rows move the wrong way).

The unit of evidence is a matrix of paired per-row differences, one row of the matrix per seed:
``d[s, i] = effect_method(seed s, row i) - effect_baseline(seed s, row i)`` on identical rows. The
bootstrap resamples seeds with replacement, then rows with replacement inside each drawn seed (the same
row indices for both methods, so the pairing is kept), and takes the mean over the drawn seeds of the
mean over the drawn rows. Seed variation (a different contrast sample, a different random vector) is
thus part of the uncertainty, which a row-only bootstrap of one seed hides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from steerlab.metrics import aggregate_seeds

__all__ = [
    "BootstrapTest",
    "anti_steerable_fraction",
    "hierarchical_bootstrap",
    "holm",
    "holm_with_ranking",
    "paired_seed_matrix",
    "ranking_verdict",
    "row_effect_distribution",
    "row_effects",
    "seed_summary",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BootstrapTest:
    """Mean paired difference, its percentile CI and a two-sided bootstrap p-value for "difference = 0"."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_seeds: int
    n_rows: int
    n_boot: int


def _as_matrix(diffs: ArrayLike) -> FloatArray:
    matrix = np.asarray(diffs, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"paired differences must be a non-empty (n_seeds, n_rows) matrix, got {matrix.shape}"
        )
    return matrix


def bootstrap_distribution(diffs: ArrayLike, *, n_boot: int = 2000, seed: int = 0) -> FloatArray:
    """The ``n_boot`` resampled statistics (mean over drawn seeds of the mean over drawn rows)."""
    matrix = _as_matrix(diffs)
    n_seeds, n_rows = matrix.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    rows = rng.integers(0, n_rows, size=(n_boot, n_seeds, n_rows))
    drawn = matrix[seeds[:, :, None], rows]  # (n_boot, n_seeds, n_rows)
    return np.asarray(drawn.mean(axis=(1, 2)), dtype=float)


def hierarchical_bootstrap(
    diffs: ArrayLike, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> BootstrapTest:
    """Test a (n_seeds, n_rows) matrix of paired differences (a 1-D array is one seed).

    p-value: ``2 * min(P(stat <= 0), P(stat >= 0))`` over the resamples, with the +1 correction
    (``(count + 1) / (n_boot + 1)``) so it is never exactly 0, capped at 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    matrix = _as_matrix(diffs)
    boots = bootstrap_distribution(matrix, n_boot=n_boot, seed=seed)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    below = (np.sum(boots <= 0) + 1) / (n_boot + 1)
    above = (np.sum(boots >= 0) + 1) / (n_boot + 1)
    return BootstrapTest(
        diff=float(matrix.mean()),
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(min(1.0, 2 * min(below, above))),
        n_seeds=int(matrix.shape[0]),
        n_rows=int(matrix.shape[1]),
        n_boot=n_boot,
    )


def paired_seed_matrix(method: Mapping[int, ArrayLike], baseline: Mapping[int, ArrayLike]) -> FloatArray:
    """Per-row differences method - baseline, one matrix row per seed of `method`.

    A baseline with the same seed is paired with it; a baseline with a single seed (a prompt, which has
    no randomness) is paired with every seed of the method. Row counts must match.
    """
    if not method:
        raise ValueError("the method has no seeds")
    out = []
    for s, values in sorted(method.items()):
        if s in baseline:
            base = baseline[s]
        elif len(baseline) == 1:
            base = next(iter(baseline.values()))
        else:
            raise ValueError(f"seed {s} of the method has no baseline seed to pair with ({sorted(baseline)})")
        a, b = np.asarray(values, dtype=float), np.asarray(base, dtype=float)
        if a.shape != b.shape:
            raise ValueError(f"seed {s}: method has {a.shape} rows, baseline {b.shape}; pair identical rows")
        out.append(a - b)
    return np.vstack(out)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given): step-down ``(m - j) * p_(j)``, made
    monotone and capped at 1. Reject where the adjusted value is below alpha."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [float(x) for x in adjusted]


def holm_with_ranking(
    p_values: Sequence[float], p_ranking: float | None, same_as: int | None = None
) -> tuple[list[float], float | None]:
    """Holm over the tests plus the winner-vs-runner-up comparison as one more member of the same family.

    Returns (adjusted p of each test, adjusted p of the ranking comparison). ``same_as``: the index of a
    test that already is that comparison (the winner against a baseline that is also the runner-up): it
    is not counted twice, and its adjusted p is the ranking's. ``p_ranking`` None: no ranking test.
    """
    if same_as is not None:
        adjusted = holm(p_values)
        return adjusted, adjusted[same_as]
    if p_ranking is None or math.isnan(p_ranking):
        return holm(p_values), None
    adjusted = holm([*p_values, p_ranking])
    return adjusted[:-1], adjusted[-1]


def seed_summary(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, std (ddof=1), n_seeds and sign agreement of one method's per-seed effects."""
    return aggregate_seeds(values)


# ---------------------------------------------------------------------------------------------- per-row steerability


def row_effects(y0: ArrayLike, y_plus: ArrayLike, direction: int = 1) -> FloatArray:
    """Per-row effect of steering, signed so that > 0 is the intended direction: ``direction * (y+ - y0)``."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, got {direction}")
    a, b = np.asarray(y_plus, dtype=float), np.asarray(y0, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"row_effects needs paired arrays of equal shape, got {b.shape} and {a.shape}")
    return np.asarray(direction * (a - b), dtype=float)


def anti_steerable_fraction(y0: ArrayLike, y_plus: ArrayLike, direction: int = 1, eps: float = 0.0) -> float:
    """Fraction of rows that move against the intended direction at +c (effect below ``-eps``)."""
    effects = row_effects(y0, y_plus, direction)
    if effects.size == 0:
        raise ValueError("anti_steerable_fraction on zero rows")
    return float(np.mean(effects < -eps))


def row_effect_distribution(effects: ArrayLike) -> dict[str, float]:
    """Quantiles (5, 25, 50, 75, 95), mean and the anti-steerable fraction of per-row effects."""
    e = np.asarray(effects, dtype=float)
    if e.size == 0:
        raise ValueError("row_effect_distribution on zero rows")
    q = np.quantile(e, [0.05, 0.25, 0.5, 0.75, 0.95])
    names = ("q05", "q25", "median", "q75", "q95")
    return {
        "mean": float(e.mean()),
        **{n: float(v) for n, v in zip(names, q, strict=True)},
        "anti": float(np.mean(e < 0)),
    }


# ---------------------------------------------------------------------------------------------- rankings


def ranking_verdict(
    per_seed: Mapping[str, Sequence[float]], adjusted_p: float | None = None, alpha: float = 0.05
) -> str:
    """One sentence on whether the best method's lead can be claimed.

    `per_seed` maps method -> effects per seed; `adjusted_p` is the Holm-adjusted p-value of the winner
    against the runner-up (None when not tested).
    """
    if len(per_seed) < 2:
        return "fewer than two methods: nothing to rank"
    means = {m: float(np.mean(v)) for m, v in per_seed.items() if len(v)}
    ranked = sorted(means, key=lambda m: means[m], reverse=True)
    winner, runner_up = ranked[0], ranked[1]
    n_seeds = min(len(per_seed[winner]), len(per_seed[runner_up]))
    if n_seeds < 2:
        return f"{winner}: single-seed winner, do not claim a ranking"
    if adjusted_p is None or math.isnan(adjusted_p):
        return f"{winner} leads {runner_up}, not tested: do not claim a ranking"
    if adjusted_p < alpha:
        return f"{winner} beats {runner_up} (Holm-adjusted p = {adjusted_p:.3g} over {n_seeds} seeds)"
    return f"{winner} leads {runner_up} but not significantly (Holm-adjusted p = {adjusted_p:.3g}): ranking unstable"
