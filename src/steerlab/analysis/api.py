"""`sl.ablate`: which part of a trained weight delta carries the behaviour (see steerlab.analysis)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from steerlab.analysis.bases import RECON_TOL
from steerlab.analysis.inputs import Adapter, adapter_from, check_adapters, load_adapters
from steerlab.analysis.overlap import subspace_overlaps
from steerlab.analysis.report import CONFIG_FILE, OVERLAP_FILE, render_ablation_report
from steerlab.analysis.run import AblationConfig, run_ablations, write_table
from steerlab.analysis.variants import ALL_FAMILIES, VariantOptions
from steerlab.analysis.verdicts import Thresholds

__all__ = ["ablate", "parse_families"]


def parse_families(variants: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cross,layer"`` or a list -> a tuple of known families; an unknown name is a one-line error."""
    if variants is None:
        return ALL_FAMILIES
    names = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    unknown = sorted(set(names) - set(ALL_FAMILIES))
    if unknown or not names:
        raise ValueError(
            f"--variants: unknown or empty {unknown or names}; choose from {', '.join(ALL_FAMILIES)}"
        )
    return tuple(dict.fromkeys(names))


def _adapters(interventions: Sequence[Any], model: nn.Module, coeff: float | None) -> list[Adapter]:
    if all(isinstance(i, (str, Path)) for i in interventions):
        return load_adapters(list(interventions), model, coeff)
    adapters = []
    for index, item in enumerate(interventions):
        if isinstance(item, Adapter):
            adapters.append(item)
        elif isinstance(item, (str, Path)):
            adapters.extend(load_adapters([item], model, coeff))
        else:
            label = f"{item.meta.get('adapter_family', 'delta')}-s{item.meta.get('seed', 0)}-{index}"
            adapters.append(adapter_from(item, label, coeff))
    check_adapters(adapters)
    for adapter in adapters:
        adapter.delta.check_compatible(model)
    return adapters


def ablate(
    model: nn.Module,
    tok: Any,
    interventions: Sequence[Any],
    evals: Sequence[str] | str,
    variants: str | Sequence[str] | None = None,
    *,
    coeff: float | None = None,
    out: str | Path | None = None,
    eval_options: dict[str, dict[str, Any]] | None = None,
    options: VariantOptions | None = None,
    arms: str = "positive",
    recalibrate: bool = False,
    reuse_prefix: bool = True,
    thresholds: Thresholds | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    overlap_k: int = 8,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The tidy ablations table for `interventions` (directories or weight deltas) on `evals`.

    With `out`, every (adapter, variant, eval) is a unit in OUT/units (a rerun resumes), and OUT gets
    ablations.parquet, overlaps.parquet, ablate.json and report.md.
    """
    if arms not in ("positive", "both"):
        raise ValueError(f"arms must be 'positive' or 'both', got {arms!r}")
    eval_names = (evals,) if isinstance(evals, str) else tuple(evals)
    if not eval_names:
        raise ValueError("ablate needs at least one eval (-e EVAL)")
    from steerlab.evals import get_eval

    for name in eval_names:
        get_eval(name)
    families = parse_families(variants)
    adapters = _adapters(interventions, model, coeff)
    config = AblationConfig(
        evals=eval_names,
        families=families,
        eval_options=dict(eval_options or {}),
        variants=options or VariantOptions(seed=seed),
        arms=arms,
        recalibrate=recalibrate,
        n_boot=n_boot,
        seed=seed,
        reuse_prefix=reuse_prefix,
    )
    store = None
    if out is not None:
        from steerlab.bench.store import UnitStore

        store = UnitStore(Path(out) / "units")
        store.clean_partial()
    started = time.perf_counter()
    table = run_ablations(model, tok, adapters, config, store=store, progress=progress)
    if out is not None:
        from steerlab.bench.store import write_atomic

        out = Path(out)
        write_table(table, out)
        overlaps = subspace_overlaps(adapters, model, overlap_k)
        write_atomic(out / OVERLAP_FILE, overlaps.to_parquet(index=False) or b"")
        policy = (
            "re-calibrated per variant to the full delta's KL"
            if recalibrate
            else (f"|c| = {coeff:g} (--coeff)" if coeff is not None else "the full delta's calibrated |c|")
        )
        document = {
            "evals": list(eval_names),
            "families": list(families),
            "eval_options": config.eval_options,
            "variant_options": asdict(config.variants),
            "arms": arms,
            "coeff_policy": policy,
            "thresholds": asdict(thresholds or Thresholds()),
            "recon_tol": RECON_TOL,
            "adapters": {
                a.label: {"source": a.source, "family": a.family, "seed": a.seed, "coeff": a.coeff}
                for a in adapters
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_atomic(out / CONFIG_FILE, json.dumps(document, indent=1, default=str))
        render_ablation_report(out, thresholds)
    return table
