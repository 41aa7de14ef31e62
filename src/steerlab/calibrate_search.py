"""The iso-KL search: find |c| with KL(c) = target, pure in the function that measures KL at c.

Jump to the c^2 power-law guess from the first point (which usually brackets the target at once), else
bracket by walking in log |c|, then Illinois regula falsi with a bisection fallback; stop at a KL jump once the bracket is narrower than ``min_bracket``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from steerlab.calibrate import CalibrationConfig, KLPoint

__all__ = ["find_coefficient"]


_FLOOR = 1e-12
_MAX_JUMP = math.log(1e4)


def _objective(kl: float, target: float) -> float:
    return math.log(max(kl, _FLOOR)) - math.log(target)


def _closest(trace: list[KLPoint], log_c: float) -> KLPoint:
    """The traced point whose log |c| is nearest `log_c`."""
    return min(trace, key=lambda p: abs(math.log(p.coeff) - log_c))


def find_coefficient(
    kl_at: Callable[[float], KLPoint], config: CalibrationConfig
) -> tuple[KLPoint, list[KLPoint], bool, str]:
    """Search |c| with KL(c) = target: (best point, trace, converged, note). Pure in `kl_at`."""
    trace: list[KLPoint] = []

    def evaluate(log_c: float) -> tuple[float, KLPoint]:
        point = kl_at(math.exp(log_c))
        trace.append(point)
        return _objective(point.kl, config.target_kl), point

    def done(point: KLPoint) -> bool:
        return abs(point.kl - config.target_kl) <= config.tol

    def best() -> KLPoint:
        return min(trace, key=lambda p: (abs(p.kl - config.target_kl), p.kl > config.target_kl))

    step = math.log(config.growth)
    x = math.log(config.start)
    fx, point = evaluate(x)
    if done(point):
        return point, trace, True, ""
    lo = hi = None
    if config.power_law_guess and point.kl > _FLOOR:
        # Jump to where KL ~ c^2 puts the target (clamped to 1e4 either way). KL grows at least as fast as
        # c^2 on the curves we see, so the jump usually overshoots and the two points bracket the target.
        x0, f0 = x, fx
        x = x - min(max(fx / 2.0, -_MAX_JUMP), _MAX_JUMP)
        fx, point = evaluate(x)
        if done(point):
            return point, trace, True, ""
        if (fx < 0) != (f0 < 0):
            lo, hi = ((x0, f0), (x, fx)) if f0 < 0 else ((x, fx), (x0, f0))
    # Bracket: walk towards the target until the objective changes sign, doubling (halving) |c| per step;
    # with the power-law guess a step is the c^2 jump when that is shorter (close to the target after a jump
    # that fell short, a doubling would overshoot far and cost extra regula falsi steps).
    direction = 1.0 if fx < 0 else -1.0
    while lo is None and len(trace) < config.max_evals:
        move = min(step, max(abs(fx) / 2.0, config.min_bracket)) if config.power_law_guess else step
        x_next = x + direction * move
        f_next, point = evaluate(x_next)
        if done(point):
            return point, trace, True, ""
        if (f_next < 0) != (fx < 0):
            lo, hi = ((x, fx), (x_next, f_next)) if fx < 0 else ((x_next, f_next), (x, fx))
            break
        x, fx = x_next, f_next
    if lo is None or hi is None:
        side = "below" if direction > 0 else "above"
        note = f"no bracket in {config.max_evals} evaluations: KL stays {side} the target up to |c| = {trace[-1].coeff:.4g}"
        return best(), trace, False, note
    # Illinois regula falsi between lo (f < 0) and hi (f > 0), bisection when the step leaves the bracket.
    (a, fa), (b, fb) = lo, hi
    retained = 0  # +1: lo kept on the last step(s), -1: hi kept
    while len(trace) < config.max_evals:
        if abs(b - a) < config.min_bracket:
            low, high = (_closest(trace, x) for x in (a, b))
            note = (
                f"KL jumps from {low.kl:.3g} to {high.kl:.3g} between |c| = {low.coeff:.5g} and "
                f"{high.coeff:.5g} (the greedy rollout changes there); took the point closer to the target"
            )
            return best(), trace, False, note
        x_new = b - fb * (b - a) / (fb - fa) if fb != fa else math.nan
        if not (math.isfinite(x_new) and min(a, b) < x_new < max(a, b)):
            x_new = 0.5 * (a + b)
        f_new, point = evaluate(x_new)
        if done(point):
            return point, trace, True, ""
        if f_new < 0:
            a, fa = x_new, f_new
            if retained == -1:
                fb /= 2.0  # hi kept twice in a row: halve its weight (Illinois)
            retained = -1
        else:
            b, fb = x_new, f_new
            if retained == 1:
                fa /= 2.0
            retained = 1
    return (
        best(),
        trace,
        False,
        f"not within {config.tol} nats of the target after {config.max_evals} evaluations",
    )
