"""The report's plots (matplotlib, Agg backend, PNG), drawn from saved bench results; no torch.

Each function takes tidy tables and a path, draws one figure, and returns the path (or None when there
is nothing to draw). Null-band arms (random vectors) are drawn as a grey band, never as a method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["plot_heatmap", "plot_score_vs_coeff", "plot_si_bars", "plot_violins"]

BAND_COLOR = "0.80"
COEFF_COLORS = {-1.0: "#3b6fb6", 0.0: "0.45", 1.0: "#c8553d"}


def save_figure(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _grid(n: int, width: float = 3.3, height: float = 2.7) -> tuple[plt.Figure, np.ndarray]:
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def panels(
    data: pd.DataFrame, column: str, width: float = 3.3, height: float = 2.7
) -> tuple[plt.Figure, np.ndarray, list[tuple[Any, Any, pd.DataFrame]]]:
    """One panel per distinct value of ``column`` (first-seen order) on a shared-y grid: the figure, its axes,
    and (axis, value, that value's rows) for each panel."""
    keys = list(dict.fromkeys(data[column]))
    fig, axes = _grid(len(keys), width=width, height=height)
    return fig, axes, [(ax, key, data[data[column] == key]) for ax, key in zip(axes.flat, keys, strict=False)]


def plot_si_bars(
    headline: pd.DataFrame, band: dict[str, tuple[float, float]], eval_name: str, path: Path
) -> Path | None:
    """Horizontal bars of SI (k=2 and k=1) per method with CI whiskers; the random band shaded behind.

    `headline` has columns label, si_k2, si_k2_low, si_k2_high, si_k1, si_k1_low, si_k1_high.
    """
    if headline.empty:
        return None
    labels = list(headline["label"])
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(labels) + 1.6))
    for offset, k, color in ((-0.18, "k2", "#3b6fb6"), (0.18, "k1", "#9bb7dd")):
        values = headline[f"si_{k}"].to_numpy(float)
        low = values - headline[f"si_{k}_low"].to_numpy(float)
        high = headline[f"si_{k}_high"].to_numpy(float) - values
        ax.barh(y + offset, values, height=0.34, color=color, label=f"SI k={k[1]}")
        ax.errorbar(
            values, y + offset, xerr=[np.nan_to_num(low), np.nan_to_num(high)], fmt="none", ecolor="0.2", lw=1
        )
    if "si_k2" in band:
        lo, hi = band["si_k2"]
        ax.axvspan(lo, hi, color=BAND_COLOR, alpha=0.6, zorder=0, label="random vectors (SI k=2 range)")
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("surgical informedness (percentage points; 95% bootstrap CI)")
    ax.set_title(f"Bidirectional SI at iso-KL on {eval_name}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_score_vs_coeff(
    scores: pd.DataFrame, kl: pd.DataFrame, band: pd.DataFrame, eval_name: str, path: Path
) -> Path | None:
    """Per method: mean score y (CI) against the coefficient in units of its calibrated |c|, KL on a second axis.

    `scores`: label, rel_coeff, coeff, value, ci_low, ci_high. `kl`: label, rel_coeff, kl.
    `band`: rel_coeff, low, high (the random vectors' range of mean y).
    """
    if scores.empty:
        return None
    fig, axes, grid = panels(scores, "label")
    twins = []
    for ax, label, mine in grid:
        s = mine.sort_values("rel_coeff")
        if not band.empty:
            b = band.sort_values("rel_coeff")
            ax.fill_between(
                b["rel_coeff"], b["low"], b["high"], color=BAND_COLOR, alpha=0.7, label="random band"
            )
        ax.errorbar(
            s["rel_coeff"],
            s["value"],
            yerr=[s["value"] - s["ci_low"], s["ci_high"] - s["value"]],
            color="#3b6fb6",
            marker="o",
            capsize=3,
            label="mean y",
        )
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xticks(sorted(s["rel_coeff"].unique()))
        c = s["coeff"].abs().max()
        dose = "no dose: no coefficient" if "no_dose" in s and bool(s["no_dose"].any()) else f"|c| = {c:.3g}"
        ax.set_title(f"{label}\n{dose}", fontsize=9)
        ax.set_xlabel("coefficient / |c|", fontsize=8)
        twin = ax.twinx()
        twins.append(twin)
        k = kl[kl["label"] == label].sort_values("rel_coeff")
        if not k.empty:
            twin.plot(k["rel_coeff"], k["kl"], color="#c8553d", ls="--", marker="s", ms=4, label="p95 KL")
        twin.set_ylim(bottom=0, top=max(1.2, float(np.nanmax(kl["kl"])) * 1.1) if len(kl) else 1.2)
        twin.tick_params(labelsize=7, colors="#c8553d")
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("mean y (> 0: positive pole)", fontsize=8)
    first = axes.flat[0]
    handles = first.get_legend_handles_labels()[0] + twins[0].get_legend_handles_labels()[0]
    first.legend(handles, [h.get_label() for h in handles], fontsize=6, loc="best", framealpha=0.8)
    fig.suptitle(
        f"{eval_name}: mean score vs coefficient (blue, 95% CI) and p95 KL on off-task prompts (red)",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap(table: pd.DataFrame, column: str, value: str, title: str, path: Path) -> Path | None:
    """Methods (``label``) x ``column`` heatmap of the mean ``value`` (annotated, diverging around 0)."""
    if table.empty:
        return None
    wide = table.pivot_table(index="label", columns=column, values=value, aggfunc="mean", sort=False)
    values = wide.to_numpy(float)
    limit = max(float(np.nanmax(np.abs(values))), 1e-6)
    fig, ax = plt.subplots(figsize=(1.1 * wide.shape[1] + 2.8, 0.45 * wide.shape[0] + 1.6))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(
                j,
                i,
                f"{v:+.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(v) > limit * 0.6 else "black",
            )
    fig.colorbar(image, ax=ax, label=f"{value} at +c")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_violins(rows: pd.DataFrame, band: pd.DataFrame, column: str, title: str, path: Path) -> Path | None:
    """Per method: violins of the per-row ``column`` at -c, 0, +c, over the random vectors' 5-95% band.

    `rows`: label, rel_coeff, <column>. `band`: rel_coeff, low, high.
    """
    if rows.empty:
        return None
    fig, axes, grid = panels(rows, "label", width=3.0, height=2.8)
    for ax, label, r in grid:
        positions = sorted(r["rel_coeff"].unique())
        for x in positions:
            match = band[np.isclose(band["rel_coeff"], x)] if not band.empty else band
            if not match.empty:
                ax.fill_between(
                    [x - 0.4, x + 0.4],
                    match["low"].iloc[0],
                    match["high"].iloc[0],
                    color=BAND_COLOR,
                    alpha=0.7,
                    lw=0,
                )
        data = [r[np.isclose(r["rel_coeff"], x)][column].to_numpy(float) for x in positions]
        parts = ax.violinplot(data, positions=positions, widths=0.7, showmedians=True, showextrema=False)
        for body, x in zip(parts["bodies"], positions, strict=True):
            body.set_facecolor(COEFF_COLORS.get(float(np.sign(x)), "0.5"))
            body.set_alpha(0.75)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_xticks(
            positions, [{-1.0: "-c", 0.0: "0", 1.0: "+c"}.get(float(x), f"{x:g}c") for x in positions]
        )
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel(column, fontsize=8)
    fig.suptitle(f"{title} by coefficient (grey: random vectors, 5-95%)", y=1.02)
    fig.tight_layout()
    return save_figure(fig, path)
