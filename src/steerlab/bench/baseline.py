"""Shared c = 0 scores: the unsteered model's rows of an eval are scored once per (model, eval, data)
and reused by every method, seed, null vector and ladder level of the run, whatever the executor.

Each distinct baseline is a unit of its own (`BaselineUnit`, kind ``baseline``) that the runner adds to
the units still to run, before the first eval unit that reads it (`attach_baselines`); every such eval
unit lists it as its second dependency. An executor therefore schedules it like any other unit (the
local one in order, Ray on one worker, its small table shipped to the workers that need it), and only
the driver writes it, into ``OUT/shared/baseline/base-<eval>-<key>`` (sealed and hashed like a unit,
outside ``OUT/units`` because it is not a unit of the plan and is not counted in its units). It is keyed
by what it depends on: the model spec, device, dtype and placement, the eval and its resolved options,
the behaviour and its content hash, the content hashes of the eval's data and of a local model, and the
steerlab version. An eval unit then scores only its non-zero coefficients and splices the shared c = 0
block in at its place, so its table is the one a full evaluation would have produced (c = 0 is the
unsteered model exactly, for every intervention kind).

A suite whose per-coefficient columns depend on the other coefficients (off-task's log-ratio is taken
against c = 0 inside its run) declares ``shares_zero=False`` at registration and is scored whole.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from steerlab.bench.plan import Unit, digest

__all__ = [
    "BASELINE_KIND",
    "ROWS",
    "SCORING_NOTE",
    "SHARED_DIR",
    "SHARED_ROWS_NOTE",
    "BaselineUnit",
    "attach_baselines",
    "baseline_inputs",
    "baseline_unit",
    "evaluate_sharing_zero",
    "score_baseline",
]

BASELINE_KIND = "baseline"
SHARED_DIR = "shared"
ROWS = "rows.parquet"
SCORING_NOTE = "scoring the unsteered model (c = 0) on"  # a worker's note: counted by the tests
SHARED_ROWS_NOTE = "c = 0 rows read from the shared baseline"
log = logging.getLogger("steerlab.bench.baseline")


@dataclass(frozen=True)
class BaselineUnit(Unit):
    """The c = 0 rows of one eval: not a unit of the plan (not in plan.json, not counted in the units
    done of total); its folder is ``base-<eval>-<key>`` under ``OUT/shared/baseline``."""

    @property
    def label(self) -> str:
        return f"base-{self.eval}"


def baseline_inputs(config: Any, unit_inputs: dict[str, Any]) -> dict[str, Any]:
    """What the c = 0 rows of an eval depend on (never the method, seed or coefficient)."""
    from steerlab import __version__
    from steerlab.bench.scale_config import placement_inputs

    return {
        "kind": BASELINE_KIND,
        "steerlab": __version__,
        "model": config.model,
        "device": config.device,
        "dtype": config.dtype,
        "eval": unit_inputs["eval"],
        "options": unit_inputs["options"],
        "behavior": unit_inputs["behavior"],
        "behavior_hash": unit_inputs["behavior_hash"],
        # content hashes of the eval's data files and of a local model directory (steerlab.provenance)
        "data": unit_inputs.get("data"),
        "model_fingerprint": unit_inputs.get("model_fingerprint"),
        **placement_inputs(config),  # device map / quantization, only when set (keys unchanged otherwise)
    }


def baseline_unit(config: Any, unit: Unit) -> BaselineUnit | None:
    """The shared baseline an eval unit reads, or None (not an eval, or a suite scored whole)."""
    from steerlab.evals import get_eval

    if unit.kind != "eval" or not getattr(get_eval(str(unit.eval)), "shares_zero", False):
        return None
    inputs = baseline_inputs(config, unit.inputs)
    return BaselineUnit(BASELINE_KIND, "base", BASELINE_KIND, 0, digest(inputs), inputs, eval=unit.eval)


def attach_baselines(
    config: Any, units: Sequence[Unit], is_done: Callable[[BaselineUnit], bool]
) -> tuple[list[Unit], list[BaselineUnit]]:
    """`units` with each distinct baseline their eval units read placed before the first of them (unless
    `is_done` says it is already stored) and named as those eval units' second dependency.

    Returns (the units to run, every baseline they read).
    """
    ordered: list[Unit] = []
    baselines: dict[str, BaselineUnit] = {}
    for unit in units:
        base = baseline_unit(config, unit)
        if base is None:
            ordered.append(unit)
            continue
        if base.name not in baselines:
            baselines[base.name] = base
            if not is_done(base):
                ordered.append(base)
        ordered.append(dataclasses.replace(unit, depends=(*unit.depends, base.name)))
    return ordered, list(baselines.values())


def score_baseline(model: Any, tok: Any, config: Any, name: str, options: dict[str, Any], out: Path) -> None:
    """Score the unsteered model on eval `name` at c = 0 and write its rows to ``out/rows.parquet``."""
    from steerlab.evals import evaluate

    zero = evaluate(model, tok, None, name, [0.0], behavior=config.behavior, **options)
    zero.attrs = {}
    zero.to_parquet(out / ROWS, index=False)


def evaluate_sharing_zero(
    baseline: Path | None,
    config: Any,
    unit_inputs: dict[str, Any],
    model: Any,
    tok: Any,
    intervention: Any,
    coeffs: Sequence[float],
    options: dict[str, Any],
) -> pd.DataFrame:
    """`evals.evaluate` at ``coeffs``, with the c = 0 block read from the shared `baseline` directory
    (a `BaselineUnit`'s files); without one (a suite scored whole, or a caller outside the bench) every
    coefficient is scored here."""
    from steerlab.evals import evaluate

    name = str(unit_inputs["eval"])
    values = [float(c) for c in coeffs]
    if baseline is None or 0.0 not in values:
        if 0.0 in values:
            log.debug("no shared baseline for %s: scoring c = 0 inside this arm", name)
        return evaluate(model, tok, intervention, name, values, behavior=config.behavior, **options)
    zero = pd.read_parquet(baseline / ROWS)
    nonzero = [c for c in values if c != 0.0]
    if not nonzero:
        return zero
    steered = evaluate(model, tok, intervention, name, nonzero, behavior=config.behavior, **options)
    blocks = [zero if c == 0.0 else steered[steered["coeff"] == c] for c in values]
    table = pd.concat(blocks, ignore_index=True)
    table.attrs = {**steered.attrs, "coeffs": values}
    return table
