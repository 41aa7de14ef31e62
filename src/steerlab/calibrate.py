"""Choose a steering coefficient: iso-KL calibration and coefficient policies.

Methods differ wildly in what ``c = 1`` means, so comparing them at a fixed coefficient compares
doses, not methods. iso-KL puts every method at the same *cost to the model*: the |c| at which the
95th percentile, over (prompt, position), of the per-token KL(steered || base) on neutral off-task
prompts reaches a target (1 nat by default).

One KL evaluation at a coefficient ``c``: a greedy rollout of T = 20 tokens under steering, whose own
next-token log-probs are the steered side, then the rollout is teacher-forced through the base model on
the prompts' KV cache, which the whole search shares (``steerlab.calibrate_arms``). With
``arms="both"`` (default) the rollout and KL are done at ``+c`` and ``-c`` and the larger p95 counts,
so neither arm of a bidirectional eval costs more than the target.

The search runs in log space: from ``start`` it jumps to where ``KL ~ c^2`` places the target (KL grows at
least that fast, so the two points usually bracket it), else brackets by doubling or halving ``c``, then
regula falsi with the Illinois modification on ``log KL`` vs ``log c`` (KL grows about as ``c^2``, so
that line is nearly straight), falling back to bisection whenever the interpolant leaves the bracket.
It stops when the KL is within ``tol`` nats of the target, after ``max_evals`` evaluations, or when
the bracket is narrower than ``min_bracket`` in log c: the KL of a greedy rollout is not continuous in
c (a token of the rollout flips at some |c|), and no coefficient between two that close hits the target.

Prompt interventions have no dose: their KL (persona prompt vs the plain prompt, same rollout) is
measured and reported, and they are evaluated at ``c = -1, 0, +1``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.base_kv import PromptKV
from steerlab.calibrate_search import find_coefficient
from steerlab.paths import package_data
from steerlab.prefix_reuse import ReuseStore, reuse_scope

__all__ = [
    "ARMS",
    "Calibration",
    "CalibrationConfig",
    "CalibrationError",
    "CoefficientPolicy",
    "KLPoint",
    "calibrate",
    "calibration_prompts",
    "find_coefficient",
    "has_dose",
    "measure_fixed",
    "measure_kl",
    "recorded_calibration",
]

ARMS = ("positive", "both")
POLICIES = ("calibrated", "fixed")


class CalibrationError(ValueError):
    """Bad calibration settings or an intervention that cannot be calibrated."""


@dataclass
class CalibrationConfig:
    """iso-KL settings; the defaults are the benchmark's (1 nat at p95, T = 20, tol 0.05, 12 evals)."""

    target_kl: float = 1.0
    quantile: float = 0.95
    n_tokens: int = 20
    tol: float = 0.05
    max_evals: int = 12
    start: float = 1.0
    growth: float = 2.0
    power_law_guess: bool = True
    min_bracket: float = 2e-3
    arms: str = "both"
    n_prompts: int | None = None
    max_batch: int = 16

    def __post_init__(self) -> None:
        checks = (
            (self.target_kl > 0, f"target_kl must be > 0, got {self.target_kl}"),
            (0 < self.quantile <= 1, f"quantile must be in (0, 1], got {self.quantile}"),
            (self.n_tokens >= 1, f"n_tokens must be >= 1, got {self.n_tokens}"),
            (0 < self.tol < self.target_kl, f"tol must be in (0, target_kl), got {self.tol}"),
            (self.max_evals >= 2, f"max_evals must be >= 2, got {self.max_evals}"),
            (self.start > 0, f"start must be > 0, got {self.start}"),
            (self.growth > 1, f"growth must be > 1, got {self.growth}"),
            (self.min_bracket > 0, f"min_bracket must be > 0, got {self.min_bracket}"),
            (self.arms in ARMS, f"arms must be one of {ARMS}, got {self.arms!r}"),
            (self.n_prompts is None or self.n_prompts >= 1, f"n_prompts must be >= 1, got {self.n_prompts}"),
        )
        for ok, message in checks:
            if not ok:
                raise CalibrationError(message)


@dataclass
class KLPoint:
    """The KL objective at one |c|: ``kl`` is the p95 of the worse arm, the others are for the report."""

    coeff: float
    kl: float
    kl_pos: float
    kl_neg: float | None = None
    mean_kl: float = 0.0


@dataclass
class Calibration:
    """What calibration found; ``as_meta()`` is what goes into intervention.json under ``calibration``."""

    policy: str  # "iso-kl" (searched), "measured" (prompt interventions: no dose) or "fixed" (given list)
    coeff: float
    achieved_kl: float
    target_kl: float
    converged: bool
    n_evals: int
    trace: list[KLPoint]
    config: dict[str, Any]
    prompts_hash: str
    seconds: float = 0.0
    note: str = ""
    model_id: str | None = None
    prompts: list[str] = field(default_factory=list)  # the off-task prompts the KL was measured on

    def as_meta(self) -> dict[str, Any]:
        document = asdict(self)
        document["trace"] = [asdict(point) for point in self.trace]
        return document

    @classmethod
    def from_meta(cls, document: dict[str, Any]) -> Calibration:
        fields = dict(document)
        fields["trace"] = [KLPoint(**point) for point in document.get("trace", [])]
        return cls(**fields)


@dataclass
class CoefficientPolicy:
    """Which coefficients an eval runs at: a fixed list, or calibrated |c| evaluated at (-c, 0, +c)."""

    mode: str = "calibrated"
    values: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0])

    def __post_init__(self) -> None:
        if self.mode not in POLICIES:
            raise CalibrationError(f"coefficient policy must be one of {POLICIES}, got {self.mode!r}")
        self.values = [float(v) for v in self.values]
        if self.mode == "fixed" and 0.0 not in self.values:
            raise CalibrationError(
                f"a fixed coefficient list must include 0 (the unsteered model), got {self.values}"
            )

    def coefficients(self, calibration: Calibration | None) -> list[float]:
        if self.mode == "fixed":
            return sorted(set(self.values))
        if calibration is None:
            raise CalibrationError("the calibrated coefficient policy needs a calibration")
        c = abs(calibration.coeff)
        return [-c, 0.0, c]


# ---------------------------------------------------------------------------------------------- prompts


def calibration_prompts(n: int | None = None) -> list[str]:
    """The built-in neutral prompts reserved for KL calibration (disjoint from every eval)."""
    prompts = [
        str(p) for p in json.loads(package_data("offtask_calibration.json").read_text(encoding="utf-8"))
    ]
    if n is not None:
        if n > len(prompts):
            raise CalibrationError(
                f"n_prompts={n} but only {len(prompts)} built-in calibration prompts exist"
            )
        prompts = prompts[:n]
    return prompts


def hash_texts(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode("utf-8")).hexdigest()[:12]


def has_dose(intervention: Any) -> bool:
    """False for interventions whose coefficient only picks a pole (prompting): nothing to calibrate."""
    return bool(getattr(intervention, "has_dose", True))


# ---------------------------------------------------------------------------------------------- one KL evaluation


def measure_kl(
    model: Any,
    tok: Any,
    intervention: Any,
    coeff: float,
    config: CalibrationConfig | None = None,
    prompts: Sequence[str] | None = None,
    *,
    batch_arms: bool = True,
    base_kv: PromptKV | None = None,
) -> KLPoint:
    """The KL objective at |c| = ``coeff``: p95 over (prompt, position), the worse arm when ``arms='both'``.

    With `batch_arms`, an intervention that steers rows apart runs both arms as one batch
    (:mod:`steerlab.calibrate_arms`; same KLs to float round-off); ``False`` forces two sequential arms.
    `base_kv` (the unsteered model's cache of these prompts) lets several evaluations share the base side."""
    from steerlab.calibrate_arms import arm_kls, paired_arm_kls
    from steerlab.row_coefficients import steers_rows

    config = config or CalibrationConfig()
    users = list(prompts) if prompts is not None else calibration_prompts(config.n_prompts)
    c = abs(float(coeff))
    paired = config.arms == "both" and batch_arms and steers_rows(intervention)
    if paired:
        pos, neg = paired_arm_kls(model, tok, intervention, c, users, config, base_kv)
    else:
        pos = arm_kls(model, tok, intervention, c, users, config, base_kv)
    kl_pos = float(np.quantile(pos, config.quantile))
    if config.arms == "positive":
        return KLPoint(coeff=c, kl=kl_pos, kl_pos=kl_pos, mean_kl=float(pos.mean()))
    if not paired:
        neg = arm_kls(model, tok, intervention, -c, users, config, base_kv)
    kl_neg = float(np.quantile(neg, config.quantile))
    mean = float(np.concatenate([pos, neg]).mean())
    return KLPoint(coeff=c, kl=max(kl_pos, kl_neg), kl_pos=kl_pos, kl_neg=kl_neg, mean_kl=mean)


# ---------------------------------------------------------------------------------------------- the search
# `find_coefficient` (pure: a root search on log KL in log |c|) lives in steerlab.calibrate_search.


def kl_measurer(
    model: Any,
    tok: Any,
    intervention: Any,
    config: CalibrationConfig,
    prompts: Sequence[str] | None = None,
    progress: Callable[[KLPoint], None] | None = None,
) -> tuple[list[str], Callable[[float], KLPoint]]:
    """The calibration prompts and ``kl_at(c)``, which measures the KL at ``c`` and reports each point;
    checks the prompts and the intervention's fit to the model first."""
    users = list(prompts) if prompts is not None else calibration_prompts(config.n_prompts)
    if not users:
        raise CalibrationError("calibration needs at least one off-task prompt")
    intervention.check_compatible(model)
    store = ReuseStore()  # the prompts' passes below the intervention's first block, shared by every c
    base_kv = PromptKV(model, tok, 2 * config.max_batch)  # the base side's prompts, shared by every c

    def kl_at(c: float) -> KLPoint:
        with reuse_scope(store):
            point = measure_kl(model, tok, intervention, c, config, users, base_kv=base_kv)
        if progress is not None:
            progress(point)
        return point

    return users, kl_at


def calibrate(
    model: Any,
    tok: Any,
    intervention: Any,
    config: CalibrationConfig | None = None,
    *,
    directory: str | Path | None = None,
    prompts: Sequence[str] | None = None,
    progress: Callable[[KLPoint], None] | None = None,
) -> Calibration:
    """iso-KL calibration of `intervention` (or KL measurement for a prompt intervention).

    When `directory` is given, the result is recorded in its intervention.json as ``meta.calibration``.
    `progress` is called with each KL evaluation as it finishes.
    """
    from steerlab.models import model_info

    config = config or CalibrationConfig()
    started = time.perf_counter()
    users, kl_at = kl_measurer(model, tok, intervention, config, prompts, progress)
    if has_dose(intervention):
        point, trace, converged, note = find_coefficient(kl_at, config)
        policy = "iso-kl"
    else:
        point = kl_at(1.0)
        trace, converged, policy = [point], True, "measured"
        note = (
            "prompt intervention: no coefficient to calibrate; KL of the persona prompt measured at c = +/-1"
        )
    result = Calibration(
        policy=policy,
        coeff=point.coeff,
        achieved_kl=point.kl,
        target_kl=config.target_kl,
        converged=converged,
        n_evals=len(trace),
        trace=trace,
        config=asdict(config),
        prompts_hash=hash_texts(users),
        seconds=time.perf_counter() - started,
        note=note,
        model_id=model_info(model).model_id,
        prompts=list(users),
    )
    if directory is not None:
        intervention.update_meta(directory, calibration=result.as_meta())
    return result


def measure_fixed(
    model: Any,
    tok: Any,
    intervention: Any,
    coefficients: Sequence[float],
    config: CalibrationConfig | None = None,
    *,
    directory: str | Path | None = None,
    prompts: Sequence[str] | None = None,
) -> Calibration:
    """KL at each |c| of a fixed coefficient list (no search); ``coeff`` is the largest |c|."""
    from steerlab.models import model_info

    config = config or CalibrationConfig()
    users = list(prompts) if prompts is not None else calibration_prompts(config.n_prompts)
    started = time.perf_counter()
    magnitudes = sorted({abs(float(c)) for c in coefficients if c != 0})
    if not has_dose(intervention):
        magnitudes = [1.0] if magnitudes else []
    base_kv = PromptKV(model, tok, 2 * config.max_batch)
    with reuse_scope():
        trace = [measure_kl(model, tok, intervention, c, config, users, base_kv=base_kv) for c in magnitudes]
    top = trace[-1] if trace else KLPoint(coeff=0.0, kl=0.0, kl_pos=0.0)
    result = Calibration(
        policy="fixed",
        coeff=top.coeff,
        achieved_kl=top.kl,
        target_kl=config.target_kl,
        converged=True,
        n_evals=len(trace),
        trace=trace,
        config=asdict(config),
        prompts_hash=hash_texts(users),
        seconds=time.perf_counter() - started,
        note=f"fixed coefficients {sorted(set(float(c) for c in coefficients))}: KL measured, not searched",
        model_id=model_info(model).model_id,
        prompts=list(users),
    )
    if directory is not None:
        intervention.update_meta(directory, calibration=result.as_meta())
    return result


def recorded_calibration(intervention: Any) -> Calibration | None:
    """The calibration stored in an intervention's meta, if any."""
    document = getattr(intervention, "meta", {}).get("calibration")
    return Calibration.from_meta(document) if document else None
