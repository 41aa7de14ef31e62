"""The ``[ablate]`` table of a bench config: after the bench's units, ablate its calibrated weight deltas.

    [ablate]
    evals = ["sycophancy-claims"]          # default: the bench's evals
    variants = ["cross", "layer", "param", "native"]
    eval_options = {}                      # default: the bench's eval_options
    recalibrate = false                    # true: each variant re-calibrated to the full delta's KL
    reuse_prefix = true                    # false: every variant runs the full forward (same scores)

Every calibrated weight-family arm of the bench (each family x seed) is one adapter; the output goes to
OUT/ablate (ablations.parquet, report.md), resumable like the rest of the bench.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AblateSection", "run_bench_ablate"]


@dataclass
class AblateSection:
    evals: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=lambda: ["cross", "layer", "param", "native"])
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    arms: str = "positive"
    random_draws: int = 3
    norm_controls: bool = True
    recalibrate: bool = False  # each variant at its own |c|, iso-KL with the full delta (slower)
    reuse_prefix: bool = True  # reuse the base's hidden states below each variant's first modified layer

    def check(self) -> None:
        from steerlab.analysis.api import parse_families

        parse_families(self.variants)
        if not isinstance(self.recalibrate, bool):
            raise ValueError(f"[ablate] recalibrate must be true or false, got {self.recalibrate!r}")
        if not isinstance(self.reuse_prefix, bool):
            raise ValueError(f"[ablate] reuse_prefix must be true or false, got {self.reuse_prefix!r}")
        if self.arms not in ("positive", "both"):
            raise ValueError(f"[ablate] arms must be 'positive' or 'both', got {self.arms!r}")


def run_bench_ablate(
    config: Any, out: Path, units: dict[str, Any], unit_dir: Any, model: Any, tok: Any
) -> str:
    """Ablate the bench's calibrated weight deltas; returns 'done' or why not."""
    from steerlab.analysis.api import ablate
    from steerlab.analysis.inputs import load_adapters
    from steerlab.analysis.variants import VariantOptions
    from steerlab.bench.runner import INTERVENTION_DIR

    section: AblateSection = config.ablate
    adapters = []
    for name, unit in units.items():
        directory = unit_dir(name) / INTERVENTION_DIR
        wanted = unit.kind == "calibrate" and unit.family == "weight" and unit.variant is None
        if wanted and (directory / "intervention.json").is_file():
            (adapter,) = load_adapters([directory], model)
            adapter.label = unit.label  # e.g. ws-lora-s0
            adapters.append(adapter)
    if not adapters:
        return "no calibrated weight-steering arm to ablate (add a ws-* method)"
    evals = section.evals or [e for e in config.evals if e != "off-task"]
    options = {e: dict(section.eval_options.get(e, config.eval_options.get(e, {}))) for e in evals}
    ablate(
        model,
        tok,
        adapters,
        evals,
        section.variants,
        out=Path(out) / "ablate",
        eval_options=options,
        options=VariantOptions(random_draws=section.random_draws, norm_controls=section.norm_controls),
        arms=section.arms,
        recalibrate=section.recalibrate,
        reuse_prefix=section.reuse_prefix,
        n_boot=config.n_boot,
    )
    return "done"
