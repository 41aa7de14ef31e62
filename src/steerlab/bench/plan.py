"""The plan of a bench run: units of work (extract, select, calibrate, eval), each keyed by a hash of its inputs.

A unit's key covers everything its output depends on (model spec, behaviour content, method and its
resolved config, seed, calibration settings, eval and its resolved options, the content sha256 of every
data file the eval reads and of a local model directory, the steerlab version) and
the key of the unit it builds on, so a config change re-runs exactly the units whose inputs changed and
everything downstream of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from steerlab.bench.config import BenchConfig
from steerlab.bench.scale_config import placement_inputs

__all__ = ["KINDS", "Unit", "build_plan", "check_data_unchanged", "data_record", "digest"]

KINDS = ("extract", "select", "calibrate", "eval")
UNHASHED_OPTIONS = ("progress",)  # display-only options never change a result


def digest(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `inputs`."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Unit:
    """One unit of work. ``variant`` is a vector index for null-band banks; ``depends`` names the units it reads."""

    kind: str
    method: str
    family: str
    seed: int
    key: str
    inputs: dict[str, Any] = field(hash=False, compare=False)
    variant: int | None = None
    eval: str | None = None
    depends: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        parts = [self.method, f"s{self.seed}"]
        if self.variant is not None:
            parts.append(f"v{self.variant}")
        if self.eval is not None:
            parts.append(self.eval)
        return "-".join(parts)

    @property
    def name(self) -> str:
        """Directory name in the store: readable label plus the first 16 hex digits of the key."""
        return f"{self.label}-{self.key[:16]}"

    @property
    def arm(self) -> str:
        """The (method, seed, variant) this unit belongs to, e.g. ``random-s0-v2``."""
        parts = [self.method, f"s{self.seed}"] + ([f"v{self.variant}"] if self.variant is not None else [])
        return "-".join(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "family": self.family,
            "seed": self.seed,
            "variant": self.variant,
            "eval": self.eval,
            "key": self.key,
            "name": self.name,
            "label": self.label,
            "depends": list(self.depends),
        }


def _method_config(name: str, options: dict[str, Any]) -> dict[str, Any]:
    from steerlab.methods import get_method
    from steerlab.methods.registry import make_config

    resolved = dataclasses.asdict(make_config(get_method(name), dict(options)))
    return {k: v for k, v in resolved.items() if k not in UNHASHED_OPTIONS}


def _eval_config(name: str, options: dict[str, Any]) -> dict[str, Any]:
    from steerlab.evals import get_eval, make_eval_config

    return dataclasses.asdict(make_eval_config(get_eval(name), dict(options)))


def _eval_data(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The eval's data files resolved now (once, at plan time) and hashed by content."""
    from steerlab.evals import get_eval, make_eval_config
    from steerlab.provenance import eval_data

    return eval_data(name, make_eval_config(get_eval(name), dict(options)))


def data_record(config: BenchConfig) -> dict[str, Any]:
    """Every input file of the run, resolved and hashed (run.json's ``data``; the report's Data section)."""
    from steerlab.behaviors import get_behavior
    from steerlab.provenance import behavior_data, model_fingerprint, shared_data

    evals = {name: _eval_data(name, config.eval_options.get(name, {})) for name in config.evals}
    selection = config.selection
    if set(selection.methods) & set(config.methods):
        evals[f"{selection.eval} (selection)"] = _eval_data(selection.eval, selection.options)
    return {
        **shared_data(),
        "behavior": behavior_data(get_behavior(config.behavior), config.behavior),
        "model": model_fingerprint(config.model),
        "evals": evals,
    }


def _data_key(record: dict[str, Any]) -> str | None:
    return record.get("sha256") or record.get("error")


def check_data_unchanged(unit: Unit, record: dict[str, Any] | None) -> None:
    """Raise when the data an eval unit scored is not the data its key was planned with (edited mid-run)."""
    planned = unit.inputs.get("data")
    if planned is None or record is None:
        return
    scored = _data_key(record)
    if scored != planned:
        raise RuntimeError(
            f"the data of eval {unit.eval!r} changed during the run (planned sha256 {str(planned)[:12]}, "
            f"scored {str(scored)[:12]}); run again with --resume to score the new data under its own key"
        )


def build_plan(config: BenchConfig) -> list[Unit]:
    """Every unit of the run, in execution order (each method's units together, dependencies first)."""
    from steerlab import __version__
    from steerlab.behaviors import get_behavior
    from steerlab.calibrate import CalibrationConfig
    from steerlab.methods import get_method
    from steerlab.provenance import model_fingerprint

    behavior = get_behavior(config.behavior)
    calibration = dataclasses.asdict(CalibrationConfig(**config.calibration))
    eval_configs = {name: _eval_config(name, config.eval_options.get(name, {})) for name in config.evals}
    eval_data = {name: _eval_data(name, config.eval_options.get(name, {})) for name in config.evals}
    selection_options = _eval_config(config.selection.eval, config.selection.options)
    selection_data = _data_key(_eval_data(config.selection.eval, config.selection.options))
    fingerprint = model_fingerprint(config.model)
    common = {
        "steerlab": __version__,
        "model": config.model,
        "device": config.device,
        "dtype": config.dtype,
        "behavior": behavior.name,
        "behavior_hash": behavior.data_hash(),
        **placement_inputs(config),
    }
    if fingerprint is not None:  # a local model directory or file: keyed by its content fingerprint
        common["model_fingerprint"] = fingerprint["sha256"]
    units: list[Unit] = []
    for method in config.methods:
        family = get_method(method).family
        method_config = _method_config(method, config.method_options.get(method, {}))
        for seed in config.seeds:
            extract_inputs = {
                "kind": "extract",
                **common,
                "method": method,
                "config": method_config,
                "seed": seed,
            }
            extract = Unit("extract", method, family, seed, digest(extract_inputs), extract_inputs)
            units.append(extract)
            source = extract
            if method in config.selection.methods:
                select_inputs = {
                    "kind": "select",
                    "source": extract.key,
                    "eval": config.selection.eval,
                    "options": selection_options,
                    "data": selection_data,
                    "coeff": config.selection.coeff,
                }
                source = Unit(
                    "select",
                    method,
                    family,
                    seed,
                    digest(select_inputs),
                    select_inputs,
                    depends=(extract.name,),
                )
                units.append(source)
            variants: list[int | None] = (
                list(range(config.null.count(method))) if method in config.null.methods else [None]
            )
            for variant in variants:
                calibrate_inputs = {
                    "kind": "calibrate",
                    "source": source.key,
                    "variant": variant,
                    "policy": config.policy,
                    "coefficients": config.coefficients if config.policy == "fixed" else None,
                    "calibration": calibration,
                }
                if config.policy == "kl-ladder":
                    calibrate_inputs["targets"] = list(config.targets)
                if config.fractions:  # only when set: the keys of runs without fractions are unchanged
                    calibrate_inputs["fractions"] = list(config.fractions)
                cal = Unit(
                    "calibrate",
                    method,
                    family,
                    seed,
                    digest(calibrate_inputs),
                    calibrate_inputs,
                    variant=variant,
                    depends=tuple(dict.fromkeys((extract.name, source.name))),
                )
                units.append(cal)
                for name in config.evals:
                    eval_inputs = {
                        "kind": "eval",
                        "source": cal.key,
                        "eval": name,
                        "options": eval_configs[name],
                        "data": _data_key(eval_data[name]),
                        "model_fingerprint": common.get("model_fingerprint"),
                        "behavior": behavior.name,
                        "behavior_hash": behavior.data_hash(),
                        "n_boot": config.n_boot,
                    }
                    if config.extra_coefficients:  # keyed only when set: other runs' keys are unchanged
                        eval_inputs["extra_coefficients"] = list(config.extra_coefficients)
                    units.append(
                        Unit(
                            "eval",
                            method,
                            family,
                            seed,
                            digest(eval_inputs),
                            eval_inputs,
                            variant=variant,
                            eval=name,
                            depends=(cal.name,),
                        )
                    )
    return units
