"""The ``kl-ladder`` coefficient policy: calibrate one intervention to several KL targets at once.

Each target is searched with `calibrate.find_coefficient`, but every KL evaluation is kept in one shared
cache, so the searches for later targets start from what the earlier ones measured: a cached point within
``tol`` of a target answers it outright, two cached points that bracket a target hand the search its
bracket for free (start at the lower one, growth = the ratio to the upper one), and otherwise the search
starts from the cached point nearest the target. A 3-level ladder thus costs far fewer than three searches.
Levels above the config's ``target_kl`` are held to the same relative precision as it (`level_tolerance`).

Interventions with no dose (prompting) are measured once at c = +/-1 and sit at that KL on every level.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from steerlab.calibrate import (
    Calibration,
    CalibrationConfig,
    CalibrationError,
    KLPoint,
    find_coefficient,
)
from steerlab.calibrate import has_dose as _kind_has_dose

__all__ = [
    "DEFAULT_TARGETS",
    "ladder_search",
    "calibrate_ladder",
    "intervention_has_dose",
    "ladder_coefficients",
    "level_tolerance",
]

DEFAULT_TARGETS = (0.25, 0.5, 1.0, 2.0)


def intervention_has_dose(intervention: Any) -> bool:
    """The intervention's declared ``has_dose`` (issue 10 contract), else calibrate's fallback."""
    declared = getattr(type(intervention), "has_dose", None)
    if isinstance(declared, bool):
        return declared
    return _kind_has_dose(intervention)


def _key(c: float) -> float:
    return round(math.log(c), 9)


@dataclass
class LadderLevel:
    """One target of the ladder: the search result and how many fresh KL evaluations it needed."""

    target_kl: float
    point: KLPoint
    trace: list[KLPoint]
    converged: bool
    note: str
    fresh_evals: int


def _search_from_cache(
    kl_at: Callable[[float], KLPoint],
    config: CalibrationConfig,
    cache: dict[float, KLPoint],
    predict: bool = True,
) -> tuple[KLPoint, list[KLPoint], bool, str]:
    target, tol = config.target_kl, config.tol
    known = sorted(cache.values(), key=lambda p: p.coeff)
    close = [p for p in known if abs(p.kl - target) <= tol]
    if close:
        best = min(close, key=lambda p: abs(p.kl - target))
        return best, [best], True, "answered by an earlier evaluation"
    below = [p for p in known if p.kl < target]
    above = [p for p in known if p.kl > target]
    lower = max(below, key=lambda p: p.coeff) if below else None
    upper = min(
        (p for p in above if lower is None or p.coeff > lower.coeff), key=lambda p: p.coeff, default=None
    )
    if lower is not None and upper is not None:
        # Start at the lower point; one step of growth lands on the upper one: the bracket costs nothing.
        step = dataclasses.replace(
            config,
            start=lower.coeff,
            growth=upper.coeff / lower.coeff,
            power_law_guess=False,
            max_evals=config.max_evals + 2,
        )
        return find_coefficient(kl_at, step)
    predicted = _power_law_start(known, target, config.growth**2) if predict else None
    if predicted is not None:
        # Measure where KL ~ c^p through the known points puts the target: that point either answers the
        # level or, with a known point on the other side, hands the search a tight bracket.
        kl_at(predicted)
        return _search_from_cache(kl_at, config, cache, predict=False)
    if known:
        nearest = min(known, key=lambda p: abs(math.log(max(p.kl, 1e-12)) - math.log(target)))
        config = dataclasses.replace(config, start=nearest.coeff, max_evals=config.max_evals + 1)
    return find_coefficient(kl_at, config)


SLOPE_RANGE = (0.5, 6.0)
"""Fitted log KL / log |c| slopes outside this range (a flat or jumping KL curve) predict nothing."""


def _power_law_start(known: Sequence[KLPoint], target: float, max_jump: float) -> float | None:
    """|c| predicted for `target` by a least-squares line through the known (log |c|, log KL) points, at
    most `max_jump` times (or 1/max_jump times) the |c| of the known point nearest the target; None when the
    fitted slope is implausible."""
    points = [(math.log(p.coeff), math.log(p.kl)) for p in known if p.coeff > 0 and p.kl > 1e-12]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    if not SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]:
        return None
    nearest_x, nearest_y = min(points, key=lambda point: abs(point[1] - math.log(target)))
    jump = (math.log(target) - nearest_y) / slope
    limit = math.log(max_jump)
    return math.exp(nearest_x + min(max(jump, -limit), limit))


def level_tolerance(config: CalibrationConfig, target: float) -> float:
    """How close a level's KL must come to `target`: the config's ``tol`` (nats) up to its ``target_kl``,
    the same share of the level above it, and at most half the level.

    Above the reference level an absolute ``tol`` would ask for more precision than the KL curve has: a
    greedy rollout that flips a token moves the KL by a few percent of itself, or more (the quick preset's
    random vector v0 on smollm2-135m: 0.96 nats at c = 2.415, 1.23 at c = 2.465). Each level's achieved KL
    is reported, and the report's "effect at the same KL" interpolates between levels.
    """
    return min(max(config.tol, config.tol * target / config.target_kl), target / 2)


def ladder_search(
    kl_at: Callable[[float], KLPoint], targets: Sequence[float], config: CalibrationConfig
) -> list[LadderLevel]:
    """Search |c| for every target (ascending), sharing one cache of KL evaluations. Pure in `kl_at`."""
    if not targets or any(t <= 0 for t in targets):
        raise CalibrationError(f"kl-ladder targets must be a non-empty list of KLs > 0, got {list(targets)}")
    cache: dict[float, KLPoint] = {}
    fresh = 0

    def cached(c: float) -> KLPoint:
        nonlocal fresh
        key = _key(c)
        if key not in cache:
            cache[key] = kl_at(c)
            fresh += 1
        return cache[key]

    levels = []
    for target in sorted(set(float(t) for t in targets)):
        level_config = dataclasses.replace(config, target_kl=target, tol=level_tolerance(config, target))
        before = fresh
        point, trace, converged, note = _search_from_cache(cached, level_config, cache)
        levels.append(LadderLevel(target, point, trace, converged, note, fresh - before))
    return levels


def calibrate_ladder(
    model: Any,
    tok: Any,
    intervention: Any,
    targets: Sequence[float] = DEFAULT_TARGETS,
    config: CalibrationConfig | None = None,
    *,
    prompts: Sequence[str] | None = None,
    progress: Callable[[KLPoint], None] | None = None,
) -> list[Calibration]:
    """One `Calibration` per target (ascending), reusing calibrate's KL evaluation across the ladder."""
    from steerlab.calibrate import hash_texts, kl_measurer
    from steerlab.models import model_info

    config = config or CalibrationConfig()
    started = time.perf_counter()
    users, kl_at = kl_measurer(model, tok, intervention, config, prompts, progress)

    model_id = model_info(model).model_id
    common: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "prompts_hash": hash_texts(users),
        "model_id": model_id,
    }
    if not intervention_has_dose(intervention):
        point = kl_at(1.0)
        seconds = time.perf_counter() - started
        note = "no dose: KL measured at c = +/-1, the same point on every level"
        return [
            Calibration(
                "measured",
                point.coeff,
                point.kl,
                float(t),
                True,
                1 if i == 0 else 0,
                [point],
                seconds=seconds,
                note=note,
                **common,
            )
            for i, t in enumerate(sorted(set(float(t) for t in targets)))
        ]
    levels = ladder_search(kl_at, targets, config)
    seconds = time.perf_counter() - started
    return [
        Calibration(
            "iso-kl",
            level.point.coeff,
            level.point.kl,
            level.target_kl,
            level.converged,
            level.fresh_evals,
            level.trace,
            seconds=seconds,
            note=level.note,
            **common,
        )
        for level in levels
    ]


def ladder_coefficients(levels: Sequence[Calibration]) -> list[float]:
    """The signed coefficients an eval runs at under the ladder: -c and +c of every level, and 0."""
    magnitudes = sorted({abs(level.coeff) for level in levels})
    return sorted({0.0, *magnitudes, *(-c for c in magnitudes)})
