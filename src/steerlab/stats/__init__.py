"""Pure statistics on saved results (numpy + pandas, no torch): significance across seeds and rows,
per-row steerability, dose-response interpolation and Pareto fronts."""

from steerlab.stats.pareto import interpolate_at_kl, pareto_front
from steerlab.stats.significance import (
    BootstrapTest,
    anti_steerable_fraction,
    hierarchical_bootstrap,
    holm,
    holm_with_ranking,
    paired_seed_matrix,
    ranking_verdict,
    row_effect_distribution,
    row_effects,
    seed_summary,
)

__all__ = [
    "BootstrapTest",
    "anti_steerable_fraction",
    "hierarchical_bootstrap",
    "holm",
    "holm_with_ranking",
    "interpolate_at_kl",
    "paired_seed_matrix",
    "pareto_front",
    "ranking_verdict",
    "row_effect_distribution",
    "row_effects",
    "seed_summary",
]
