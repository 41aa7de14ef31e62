"""Evaluate every (adapter, variant, eval) as a resumable unit, check the invariants, and compute retention.

The base model's scores at c = 0 are computed once per eval and shared by every variant and adapter.
Each variant is scored at +c (and -c with ``arms="both"``), c the full dW's calibrated |c| unless
overridden or re-calibrated per variant. Retention = effect / effect of ``full`` (effect: the change of
mean y from c = 0), with a paired bootstrap CI over rows (rows resampled jointly for c = 0, the variant
and ``full``). A variant whose rows differ from ``full``'s at any coefficient fails the run; ``zero`` must
reproduce the base scores exactly and ``full`` must be the extracted intervention itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from steerlab import prefix_reuse as prefix
from steerlab.analysis import memo
from steerlab.analysis.inputs import Adapter
from steerlab.analysis.retention import bidirectional_si, retention_rows
from steerlab.analysis.variants import (
    ALL_FAMILIES,
    Variant,
    VariantOptions,
    for_each_variant,
    tensor_info,
)
from steerlab.interventions import WeightDelta
from steerlab.interventions.weight import LowRankDelta

__all__ = ["AblationConfig", "InvariantError", "retention_rows", "run_ablations"]

log = logging.getLogger("steerlab.analysis.run")

ROWS = "rows.parquet"
KEEP_COLUMNS = ["row_id", "coeff", "y", "pmass"]


class InvariantError(RuntimeError):
    """An ablation invariant failed (zero != base, full != the extracted delta)."""


@dataclass
class AblationConfig:
    """What to run: evals (with per-eval options), variant families, arms, bootstrap."""

    evals: tuple[str, ...]
    families: tuple[str, ...] = ALL_FAMILIES
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: VariantOptions = field(default_factory=VariantOptions)
    arms: str = "positive"  # or "both": also -c (bidirectional SI)
    recalibrate: bool = False
    n_boot: int = 1000
    seed: int = 0
    max_batch: int = 64
    reuse_prefix: bool = True  # variants reuse the base's hidden states below their first modified layer
    prefix_max_bytes: int = prefix.DEFAULT_MAX_BYTES  # the recorded hidden states' cap (all evals)


def _key(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _delta_hash(adapter: Adapter) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(adapter.delta.tensors().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _scored(
    store: Any, kind: str, name: str, inputs: dict[str, Any], compute: Callable[[], pd.DataFrame]
) -> pd.DataFrame:
    """A unit's rows from the store, or computed and written atomically (no store: just computed)."""
    if store is None:
        return compute()
    key = _key(inputs)
    if store.record(kind, name, key) is not None:
        return pd.read_parquet(store.path(kind, name) / ROWS)
    table = compute()
    with store.writing(kind, name, key, inputs) as tmp:
        table.to_parquet(tmp / ROWS, index=False)
    return table


def _evaluate(
    model: nn.Module,
    tok: Any,
    delta: Any,
    eval_name: str,
    coeffs: list[float],
    behavior: Any,
    config: AblationConfig,
) -> pd.DataFrame:
    from steerlab.evals import evaluate

    table = evaluate(
        model,
        tok,
        delta,
        eval_name,
        coeffs=coeffs,
        behavior=behavior,
        max_batch=config.max_batch,
        **config.eval_options.get(eval_name, {}),
    )
    out = table[KEEP_COLUMNS].copy()
    out["row_id"] = out["row_id"].astype(str)
    out.attrs = {}
    return out


def _coeffs(
    variant: Variant, adapter: Adapter, model: nn.Module, tok: Any, config: AblationConfig
) -> list[float]:
    c = adapter.coeff
    if config.recalibrate and variant.keep not in ("full", "zero"):
        import dataclasses

        from steerlab.calibrate import CalibrationConfig, calibrate

        recorded = adapter.delta.meta.get("calibration") or {}
        names = {f.name for f in dataclasses.fields(CalibrationConfig)}
        settings = {k: v for k, v in (recorded.get("config") or {}).items() if k in names}
        settings["target_kl"] = float(recorded.get("achieved_kl") or settings.get("target_kl", 1.0))
        cal = calibrate(model, tok, variant.delta, CalibrationConfig(**settings))
        c = abs(float(cal.coeff))
    return [c] if config.arms == "positive" else [-c, c]


def _check_invariants(variant: Variant, adapter: Adapter, rows: pd.DataFrame, base: pd.DataFrame) -> None:
    if variant.keep == "full" and variant.delta is not adapter.delta:
        raise InvariantError(f"{adapter.label}: the 'full' variant is not the extracted intervention")
    if variant.keep == "zero":
        y0 = base.set_index("row_id")["y"]
        for coeff, part in rows.groupby("coeff"):
            mine = part.set_index("row_id")["y"].reindex(y0.index)
            if not np.array_equal(mine.to_numpy(), y0.to_numpy()):
                raise InvariantError(
                    f"{adapter.label}: 'zero' at c={coeff:g} does not reproduce the base scores exactly "
                    f"(max |dy| {float(np.nanmax(np.abs(mine.to_numpy() - y0.to_numpy()))):.3g})"
                )


class _AdapterUnits:
    """Scores each variant of one adapter on every eval as it is built (stored or reused unit by unit),
    checks its invariants, and keeps only its rows and metadata (never its tensors)."""

    def __init__(
        self,
        model: nn.Module,
        tok: Any,
        adapter: Adapter,
        config: AblationConfig,
        store: Any,
        behavior: str | None,
        bases_by_eval: dict[str, pd.DataFrame],
        notify: Callable[[str], None],
        records: dict[str, prefix.PrefixRecord | None] | None = None,
    ) -> None:
        self.model, self.tok, self.adapter, self.config = model, tok, adapter, config
        self.records = records or {}
        self.info = tensor_info(model, list(adapter.delta.deltas))
        self.store, self.behavior, self.bases, self.notify = store, behavior, bases_by_eval, notify
        self.delta_hash = _delta_hash(adapter)
        self.full_storage = _storage(adapter.delta)
        self.scored: dict[str, dict[str, pd.DataFrame]] = {e: {} for e in config.evals}
        self.seconds: dict[str, dict[str, float]] = {e: {} for e in config.evals}
        self.meta: dict[str, dict[str, Any]] = {}
        self.same: dict[tuple[Any, ...], str] = {}

    def consume(self, variant: Variant) -> None:
        if variant.name in self.meta:
            raise ValueError(f"{self.adapter.label}: two variants are named {variant.name!r}")
        self.meta[variant.name] = {
            "ablation": variant.ablation,
            "variant": variant.name,
            "basis": variant.basis,
            "group": variant.group,
            "k": _k_of(variant.name),
            "layers": variant.layers,
            "modules": variant.modules,
            "keep": variant.keep,
            "energy_fraction": variant.energy_fraction,
            "norm_fraction": variant.norm_fraction,
            "n_tensors": variant.n_tensors,
            "expected_retention": variant.expected_retention,
        }
        signature = _signature(variant, self.full_storage)
        twin = self.same.get(signature) if signature is not None else None
        if signature is not None and twin is None:
            self.same[signature] = variant.name
        for eval_name in self.config.evals:
            if twin is not None:  # e.g. a third that is one layer: the very same tensors, scored once
                self.scored[eval_name][variant.name] = self.scored[eval_name][twin]
                self.seconds[eval_name][variant.name] = 0.0
                continue
            started = time.perf_counter()
            rows = _scored(
                self.store,
                "ablate",
                f"{self.adapter.label}--{variant.name}--{eval_name}",
                self._inputs(variant, eval_name),
                functools.partial(self._compute, variant, eval_name),
            )
            self.seconds[eval_name][variant.name] = time.perf_counter() - started
            _check_invariants(variant, self.adapter, rows, self.bases[eval_name])
            self.scored[eval_name][variant.name] = rows
            self.notify(
                f"[{len(self.meta)}] {self.adapter.label} {eval_name} {variant.name}: "
                f"{self.seconds[eval_name][variant.name]:.1f}s"
            )

    def _inputs(self, variant: Variant, eval_name: str) -> dict[str, Any]:
        config = self.config
        return {
            "adapter": self.adapter.label,
            "delta": self.delta_hash,
            "variant": variant.name,
            "eval": eval_name,
            "options": config.eval_options.get(eval_name, {}),
            "coeff": self.adapter.coeff,
            "arms": config.arms,
            "recalibrate": config.recalibrate,
            "variant_options": asdict(config.variants),
            "families": list(config.families),
        }

    def _compute(self, variant: Variant, eval_name: str) -> pd.DataFrame:
        coeffs = _coeffs(variant, self.adapter, self.model, self.tok, self.config)  # only for units to run
        with prefix.reusing(self.model, self.records.get(eval_name), self._first_layer(variant)):
            return _evaluate(
                self.model, self.tok, variant.delta, eval_name, coeffs, self.behavior, self.config
            )

    def _first_layer(self, variant: Variant) -> int:
        """The first decoder layer the variant modifies (0 when it touches anything outside the layers)."""
        found = [self.info[n].layer if n in self.info else -1 for n in variant.delta.deltas]
        return max(min(found, default=0), 0)


def _prefix_record(
    model: nn.Module, adapters: Sequence[Adapter], config: AblationConfig, budget: int
) -> prefix.PrefixRecord | None:
    """An empty record of the layers the adapters modify (but layer 0), or None without prefix reuse."""
    if not config.reuse_prefix or budget <= 0:
        return None
    names = sorted({n for a in adapters for n in a.delta.deltas})
    layers = frozenset(i.layer for i in tensor_info(model, names).values() if i.layer > 0)
    return prefix.PrefixRecord(layers, budget) if layers else None


def _recorded(
    model: nn.Module, record: prefix.PrefixRecord | None, compute: Callable[[], pd.DataFrame]
) -> Callable[[], pd.DataFrame]:
    def run() -> pd.DataFrame:
        with prefix.recording(model, record):
            return compute()

    return run


def _storage(delta: WeightDelta) -> set[int]:
    return {t.data_ptr() for t in delta.tensors().values()}


def _k_of(name: str) -> float:
    """The K of a basis variant (keep_B_shared_K32, random_null_K8_draw0, top8, tail32, base_top32), else NaN."""
    found = re.search(r"(?:_K|^top|^tail|base_top)(\d+)", name)
    return float(found.group(1)) if found else math.nan


def _signature(variant: Variant, full_storage: set[int]) -> tuple[Any, ...] | None:
    """Equal for two variants that are the same subset of the full delta's own tensors; None for a variant
    with tensors of its own (their storage may be freed and reused, so addresses prove nothing)."""
    if variant.keep in ("full", "zero"):
        return (variant.keep,)
    parts = []
    for name, delta in sorted(variant.delta.deltas.items()):
        tensors = (delta.up, delta.down) if isinstance(delta, LowRankDelta) else (delta,)
        if any(t.data_ptr() not in full_storage for t in tensors):
            return None
        parts.append((name, *((t.data_ptr(), tuple(t.shape), tuple(t.stride())) for t in tensors)))
    return tuple(parts)


def _sign_behavior(name: str | None) -> str | None:
    """The behaviour that signs y for every unit (base and variants alike); None (the suite's native sign)
    when the recorded behaviour is not built in or a file any more."""
    from steerlab.behaviors import UnknownBehaviorError, get_behavior

    if name is None:
        return None
    try:
        get_behavior(name)
    except (UnknownBehaviorError, FileNotFoundError):
        log.warning("behaviour %r cannot be resolved; every eval uses its native sign", name)
        return None
    return name


def run_ablations(
    model: nn.Module,
    tok: Any,
    adapters: Sequence[Adapter],
    config: AblationConfig,
    store: Any = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The tidy ablations table for every adapter x variant x eval (see the module docstring)."""
    from steerlab.models import model_info
    from steerlab.progress import report

    notify = progress or (lambda message: report("ablate", message=message))
    behavior = _sign_behavior(adapters[0].behavior)
    model_id = model_info(model).model_id
    bases_by_eval: dict[str, pd.DataFrame] = {}
    records_by_eval: dict[str, prefix.PrefixRecord | None] = {}
    budget = config.prefix_max_bytes
    inputs: dict[str, Any]
    for eval_name in config.evals:
        inputs = {
            "eval": eval_name,
            "options": config.eval_options.get(eval_name, {}),
            "behavior": behavior,
            "model": model_id,
        }
        base = functools.partial(_evaluate, model, tok, None, eval_name, [0.0], behavior, config)
        record = _prefix_record(model, adapters, config, budget)
        bases_by_eval[eval_name] = _scored(
            store, "ablate-base", eval_name, inputs, _recorded(model, record, base)
        )
        if record is not None and not record.calls and not record.overflow:  # the base came from the store
            _recorded(model, record, base)()
        records_by_eval[eval_name] = record
        budget -= record.bytes if record is not None else 0
    records: list[dict[str, Any]] = []
    with memo.memoized("base_svd", "shared_basis"):  # shared by every adapter
        for adapter in adapters:
            records.extend(
                _adapter_records(
                    model,
                    tok,
                    adapter,
                    adapters,
                    config,
                    store,
                    behavior,
                    bases_by_eval,
                    notify,
                    model_id,
                    records_by_eval,
                )
            )
    table = pd.DataFrame.from_records(records)
    if len(table):
        table["retention"] = table["retention"].astype(float)
        table.loc[~np.isfinite(table["retention"]), "retention"] = math.nan
    return table


def _adapter_records(
    model: nn.Module,
    tok: Any,
    adapter: Adapter,
    adapters: Sequence[Adapter],
    config: AblationConfig,
    store: Any,
    behavior: str | None,
    bases_by_eval: dict[str, pd.DataFrame],
    notify: Callable[[str], None],
    model_id: str,
    prefix_records: dict[str, prefix.PrefixRecord | None],
) -> list[dict[str, Any]]:
    """Build and score every variant of one adapter; its rows of the ablations table."""
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    unit = _AdapterUnits(model, tok, adapter, config, store, behavior, bases_by_eval, notify, prefix_records)
    for_each_variant(adapter, adapters, model, unit.consume, config.families, config.variants)
    notify(f"{adapter.label}: {len(unit.meta)} variants in {time.perf_counter() - started:.1f}s")
    for eval_name in config.evals:
        found = retention_rows(
            bases_by_eval[eval_name],
            unit.scored[eval_name],
            config.n_boot,
            config.seed,
            where=f"{adapter.label} / {eval_name}",
        )
        for row in found:
            v = unit.meta[row["variant"]]
            records.append(
                {
                    "model": model_id,
                    "behavior": adapter.behavior,
                    "adapter": adapter.label,
                    "adapter_family": adapter.family,
                    "seed": adapter.seed,
                    **v,
                    "n_tensors_full": len(adapter.delta.deltas),
                    "eval": eval_name,
                    "si_bidirectional": bidirectional_si(
                        bases_by_eval[eval_name], unit.scored[eval_name][row["variant"]]
                    ),
                    "seconds": unit.seconds[eval_name][row["variant"]],
                    **row,
                }
            )
    return records


def write_table(table: pd.DataFrame, out: Path) -> Path:
    """ablations.parquet, written atomically."""
    from steerlab.bench.store import write_atomic

    path = Path(out) / "ablations.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".ablations.parquet.tmp")
    table.to_parquet(tmp, index=False)
    write_atomic(path, tmp.read_bytes())
    tmp.unlink()
    return path
