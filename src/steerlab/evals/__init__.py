"""Eval suites: load rows, build prompts, score them under an intervention at several coefficients, and
return a tidy per-row table (one row per (row_id, coeff), identical rows at every coefficient).

Every table has the columns eval, row_id, label, coeff, per-answer log-probs, logratio, pmass and y,
where ``y > 0`` means the positive pole was preferred: the suite's native pole (see `EvalSpec.native_pole`)
times the behaviour's sign from its ``eval_axis`` (column ``sign``; tiny-mfv: ``axis_weight``).

    table = evaluate(model, tok, intervention, "ai-risk-ab", coeffs=[-1, 0, 1], n_per_file=50)
    summary = summarise_eval(table)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from steerlab.evals import (  # noqa: F401  (each module registers its suites)
    ai_risk,
    airisk_dilemmas,
    capability,
    daily_dilemmas,
    mc,
    off_task,
    sycophancy,
    tiny_mfv,
    trait_eval,
)
from steerlab.evals.common import EmptySelectionError, RunContext, SchemaError
from steerlab.evals.registry import (
    EVALS,
    Axis,
    EvalSpec,
    UnknownEvalError,
    get_eval,
    list_evals,
    make_eval_config,
    register_eval,
)
from steerlab.evals.summary import standard_summary
from steerlab.metrics import pivot_by_coeff
from steerlab.prefix_reuse import reuse_scope
from steerlab.provenance import eval_data

__all__ = [
    "EVALS",
    "Axis",
    "EmptySelectionError",
    "EvalSpec",
    "SchemaError",
    "UnknownEvalError",
    "evaluate",
    "get_eval",
    "list_evals",
    "make_eval_config",
    "register_eval",
    "resolve_axis",
    "summarise_eval",
]


def resolve_axis(spec: EvalSpec, behavior: Any = None, intervention: Any = None) -> Axis:
    """The behaviour's sign hints for this suite.

    ``behavior`` (a name, a file or a Behavior) wins; otherwise the intervention's ``meta["behavior"]``.
    An explicitly named behaviour that does not exist is an error; a name in an intervention's meta that
    cannot be resolved (e.g. a behaviour file that moved) falls back to the suite's native sign.
    """
    from steerlab.behaviors import UnknownBehaviorError, get_behavior

    explicit = behavior is not None
    if behavior is None and intervention is not None:
        behavior = (getattr(intervention, "meta", None) or {}).get("behavior")
    if behavior is None:
        return Axis(source="native sign: no behaviour given")
    try:
        resolved = get_behavior(behavior)
    except (UnknownBehaviorError, FileNotFoundError):
        if explicit:
            raise
        return Axis(
            behavior=str(behavior),
            source=f"native sign: behaviour {behavior!r} (from the intervention) "
            "is not a built-in behaviour or an existing file",
        )
    for key in spec.axis_keys:
        hints = resolved.eval_axis.get(key)
        if hints is not None:
            if not isinstance(hints, dict):
                raise ValueError(
                    f"behaviour {resolved.name!r}: eval_axis.{key} must be a table, got {hints!r}"
                )
            return Axis(
                resolved.name,
                dict(hints),
                f"behaviour {resolved.name!r} eval_axis.{key}",
                resolved.positive_label,
            )
    return Axis(
        resolved.name,
        {},
        f"native sign: behaviour {resolved.name!r} has no eval_axis for {spec.name!r}",
        resolved.positive_label,
    )


def _coeff_list(coeffs: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(c) for c in coeffs)
    if not values:
        raise ValueError("coeffs is empty; give at least one coefficient, e.g. [-1, 0, 1]")
    if any(not math.isfinite(c) for c in values):
        raise ValueError(f"coeffs must be finite numbers, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"coeffs has duplicates: {list(values)}")
    return values


def evaluate(
    model: Any,
    tok: Any,
    intervention: Any,
    eval: str,
    coeffs: Sequence[float] = (-1.0, 0.0, 1.0),
    *,
    behavior: Any = None,
    config: Any = None,
    progress: bool = False,
    max_batch: int = 64,
    max_batch_tokens: int | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score ``intervention`` (None = the base model) on the suite ``eval`` at every coefficient.

    ``options`` (or ``config``, a dict or the suite's config dataclass) set the suite's options, e.g.
    ``n_dilemmas=20``; an unknown option is an error listing the valid ones. The returned table carries
    ``attrs`` with the eval name, config, coefficients and the sign used.
    """
    spec = get_eval(eval)
    cfg = make_eval_config(spec, config, **options)
    values = _coeff_list(coeffs)
    axis = resolve_axis(spec, behavior)
    if intervention is not None:
        intervention.check_compatible(model)
    ctx = RunContext(model, tok, intervention, values, axis, spec.name, progress, max_batch, max_batch_tokens)
    with reuse_scope():
        table = spec.run(ctx, cfg)
    got = sorted(float(c) for c in table["coeff"].unique())
    if got != sorted(values):
        raise RuntimeError(f"eval {spec.name!r} returned coefficients {got}, expected {sorted(values)}")
    pivot_by_coeff(table, "y")  # raises unless every coefficient holds exactly the same rows
    table.attrs = {
        "eval": spec.name,
        "config": dataclasses.asdict(cfg),
        "coeffs": list(values),
        "sign": sign_info(spec, axis),
        "data": eval_data(spec.name, cfg),
    }
    return table


def sign_info(spec: EvalSpec, axis: Axis) -> dict[str, Any]:
    """What ``y > 0`` means for this table, in words and as the hints used."""
    pole = None
    if axis.hints and axis.positive_label:
        pole = f"the {axis.positive_label!r} pole of behaviour {axis.behavior!r}"
    return {
        "native_pole": spec.native_pole,
        "behavior": axis.behavior,
        "axis": dict(axis.hints),
        "source": axis.source,
        "y_positive_means": (
            f"{pole} (native: {spec.native_pole}; times the behaviour's axis)"
            if pole
            else f"native: {spec.native_pole}"
        ),
    }


def summarise_eval(
    table: pd.DataFrame,
    eval: str | None = None,
    *,
    config: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Summary of one per-row table: tidy metric rows with paired bootstrap CIs, plus suite extras
    (e.g. tiny-mfv's per-foundation deltas) and the sign the table was scored with."""
    name = eval or table.attrs.get("eval") or str(table["eval"].iloc[0])
    spec = get_eval(name)
    if config is None and "config" in table.attrs:
        config = make_eval_config(spec, table.attrs["config"])
    fn = spec.summarise or standard_summary
    summary = fn(table, config=config, n_boot=n_boot, seed=seed, alpha=alpha)
    summary["eval"] = spec.name
    if "sign" in table.attrs:
        summary["sign"] = table.attrs["sign"]
    return summary
