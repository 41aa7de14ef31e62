"""The violins of `steerlab.report_vectors`: per method, one violin per group of vectors (all, top-1,
top-3, ranks 1-3) over a grey band (the random vectors' 5-95%); matplotlib Agg, no torch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steerlab.report_plots import BAND_COLOR, panels, save_figure

__all__ = ["plot_group_violins"]


def plot_group_violins(
    data: pd.DataFrame, band: tuple[float, float] | None, title: str, path: Path
) -> Path | None:
    """`data`: method, group, value. One panel per method, groups in their first-seen order."""
    if data.empty:
        return None
    fig, axes, grid = panels(data, "method", width=3.6, height=2.8)
    for ax, method, mine in grid:
        groups = list(dict.fromkeys(mine["group"]))
        positions = list(range(len(groups)))
        if band is not None:
            ax.axhspan(band[0], band[1], color=BAND_COLOR, alpha=0.7, lw=0)
        values = [mine[mine["group"] == g]["value"].to_numpy(float) for g in groups]
        parts = ax.violinplot(values, positions=positions, widths=0.7, showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("#c8553d")
            body.set_alpha(0.75)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_xticks(positions, groups, rotation=30)
        ax.set_title(method, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("logit difference", fontsize=8)
    fig.suptitle(f"{title} at each vector's best scale (grey: random band, 5-95%)", y=1.02)
    fig.tight_layout()
    return save_figure(fig, path)
