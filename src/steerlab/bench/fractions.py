"""Coefficients as fractions of each arm's iso-KL coefficient (``[coefficients] fractions``).

A fixed coefficient means different things for different vectors and models (residual norms differ), so
a grid such as -20 ... 20 on unit vectors is paired with the same grid in units of each arm's own iso-KL
|c|: ``fractions = [-1, -0.5, -0.25, 0, 0.25, 0.5, 1]`` evaluates f x c_iso for every f. Any method with
a dose qualifies; an intervention with no dose (a prompt) has no |c| to take fractions of and keeps the
policy's coefficients. With ``policy = "fixed"`` the arm is calibrated as well (recorded as its
``calibration``) and the KL at each fixed |c| is kept in the meta as ``calibration_fixed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from steerlab.bench.config_errors import config_error

__all__ = ["calibrate_for_fractions", "fraction_coefficients", "parse_fractions", "with_fractions"]

FRACTION_POLICIES = ("fixed", "calibrated")


def parse_fractions(config: Any, table: dict[str, Any]) -> None:
    """``fractions``: a list of numbers (fractions of the iso-KL |c|) for the fixed or calibrated policy."""
    if "fractions" not in table:
        return
    fractions = table["fractions"]
    ok = isinstance(fractions, list) and bool(fractions)
    ok = ok and all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions)
    if not ok:
        raise config_error(
            config,
            f"[coefficients] fractions must be a non-empty list of numbers, got {fractions!r}",
            "fractions",
        )
    if config.policy not in FRACTION_POLICIES:
        raise config_error(
            config,
            f"[coefficients] fractions needs policy {' or '.join(FRACTION_POLICIES)}, got {config.policy!r}",
            "fractions",
        )
    config.fractions = sorted({float(f) for f in fractions})


def fraction_coefficients(fractions: Sequence[float], c_iso: float) -> list[float]:
    """f x |c_iso| for every fraction f (0 stays exactly 0)."""
    c = abs(float(c_iso))
    return sorted({0.0 if f == 0 else float(f) * c for f in fractions})


def with_fractions(
    coefficients: Sequence[float], fractions: Sequence[float], calibration: Any
) -> list[float]:
    """The policy's coefficients plus the fraction grid of the arm's iso-KL |c| (when it has one)."""
    coeffs = {float(c) for c in coefficients}
    if calibration is not None and calibration.policy == "iso-kl" and calibration.coeff:
        coeffs |= set(fraction_coefficients(fractions, calibration.coeff))
    return sorted(coeffs)


def calibrate_for_fractions(
    model: Any,
    tok: Any,
    intervention: Any,
    bench: Any,
    config: Any,
    directory: str | Path,
    progress: Callable[[Any], None] | None = None,
) -> Any:
    """iso-KL calibration of the arm (its ``calibration``); under the fixed policy also the KL at each
    fixed |c| (``calibration_fixed`` in the meta)."""
    from steerlab.calibrate import calibrate, measure_fixed

    result = calibrate(model, tok, intervention, config, directory=directory, progress=progress)
    if bench.policy == "fixed":
        fixed = measure_fixed(model, tok, intervention, bench.coefficients, config)
        intervention.update_meta(directory, calibration_fixed=fixed.as_meta())
    return result
