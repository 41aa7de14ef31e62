"""Per-vector report views for banks of steering vectors (unsupervised methods, random controls); torch-free.

A bench config declares them as data (``[[report.views]]``, e.g. in the ``unsupervised`` preset); they
read the per-row tables, so nothing here knows a method's name. Each view orients the eval's y by
``sign`` (y > 0 is the behaviour's positive pole; ``sign = -1`` with ``outcome = "survival"`` turns a
corrigibility axis into the survival logit difference) and groups coefficients on a grid:
``grid = "scale"`` (the fixed coefficients) or ``"fraction"`` (coefficient / the arm's iso-KL |c|).

- `ScaleGridView`: % outcome and mean outcome logit difference per method x grid point (all vectors averaged);
- `BestVectorsView`: the vectors whose best grid point moves the outcome most above the c = 0 baseline;
- `VectorViolinsView`: per-row outcome logit difference at each vector's best grid point, for all vectors,
  the top-1 and top-3 pooled and ranks 1-3, over the band of ``band_methods`` (random vectors, 5-95%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from steerlab.report_spec import ReportView, register_view_kind, view_from_dict
from steerlab.report_tables import BenchResults, markdown_table
from steerlab.report_views import VIEW_RENDERERS, EvalReportContext, render_view

__all__ = [
    "BestVectorsView",
    "ScaleGridView",
    "VectorViolinsView",
    "arm_grid",
    "best_vectors",
    "declared_views_lines",
    "method_grid",
    "violin_groups",
]

GRIDS = ("scale", "fraction")
ARM_KEYS = ["arm", "method", "seed", "variant"]
GROUPS = ("all", "top-1", "top-3", "rank 1", "rank 2", "rank 3")


@dataclass(frozen=True)
class _VectorView(ReportView):
    """Shared fields: the eval, the sign that orients y, the outcome's name, the coefficient grid."""

    eval: str = ""
    sign: int = 1
    outcome: str = "positive pole"
    grid: str = "scale"


@dataclass(frozen=True)
class ScaleGridView(_VectorView):
    kind: ClassVar[str] = "scale_grid"


@dataclass(frozen=True)
class BestVectorsView(_VectorView):
    kind: ClassVar[str] = "best_vectors"
    top: int = 10


@dataclass(frozen=True)
class VectorViolinsView(_VectorView):
    kind: ClassVar[str] = "vector_violins"
    band_methods: tuple[str, ...] = field(default_factory=tuple)


for _cls in (ScaleGridView, BestVectorsView, VectorViolinsView):
    register_view_kind(_cls)


# ---------------------------------------------------------------------------------------------- pure tables


def _nearest(points: list[float], x: float) -> float:
    return float(min(points, key=lambda p: abs(float(p) - x)))


def arm_grid(
    rows: pd.DataFrame,
    sign: int,
    grid: str,
    points: list[float] | None,
    calibrated: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Per arm and grid point: ``pct`` (% rows with sign x y > 0), ``mean`` (mean sign x y), ``n``.

    `rows`: arm, method, seed, variant, coeff, y. ``grid="scale"`` keys rows by coeff; ``"fraction"`` by
    coeff / `calibrated`[arm] (arms without an iso-KL |c| are dropped). `points`: keep only these keys
    (matched with isclose); None keeps all. c = 0 is always the point 0.
    """
    if grid not in GRIDS:
        raise ValueError(f"report view grid must be one of {GRIDS}, got {grid!r}")
    frame = rows.copy()
    frame["v"] = float(sign) * frame["y"].astype(float)
    if grid == "fraction":
        scale = frame["arm"].map(calibrated or {})
        frame = frame[scale.notna() & (scale > 0)]
        frame["point"] = (frame["coeff"] / frame["arm"].map(calibrated or {})).round(6)
    else:
        frame["point"] = frame["coeff"].astype(float).round(6)
    if points is not None:
        keep = np.zeros(len(frame), dtype=bool)
        for point in points:
            keep |= np.isclose(frame["point"].to_numpy(float), float(point), atol=1e-6)
        frame = frame[keep]
        frame["point"] = [_nearest(points, float(x)) for x in frame["point"]]
    grouped = frame.groupby([*ARM_KEYS, "point"], dropna=False, sort=True)["v"]
    out = grouped.agg(pct=lambda v: float((v > 0).mean() * 100), mean="mean", n="size").reset_index()
    return out


def method_grid(per_arm: pd.DataFrame) -> pd.DataFrame:
    """Per method and grid point: the mean over vectors (and seeds) of ``pct`` and ``mean``."""
    grouped = per_arm.groupby(["method", "point"], sort=False)
    return grouped.agg(pct=("pct", "mean"), mean=("mean", "mean"), vectors=("arm", "nunique")).reset_index()


def best_vectors(per_arm: pd.DataFrame) -> pd.DataFrame:
    """Per arm: the grid point (not 0) with the highest ``pct`` (ties: higher mean), its pct and mean, and
    the effect vs the arm's c = 0 baseline (pp of pct, and of mean); sorted by effect, best first, with
    ``rank`` within (method, seed)."""
    records = []
    for keys, arm in per_arm.groupby(ARM_KEYS, dropna=False, sort=False):
        base = arm[np.isclose(arm["point"], 0.0)]
        steered = arm[~np.isclose(arm["point"], 0.0)]
        if base.empty or steered.empty:
            continue
        best = steered.sort_values(["pct", "mean"], ascending=False, kind="stable").iloc[0]
        records.append(
            {
                **dict(zip(ARM_KEYS, keys, strict=True)),
                "best_point": float(best["point"]),
                "pct": float(best["pct"]),
                "mean": float(best["mean"]),
                "base_pct": float(base["pct"].iloc[0]),
                "effect_pct": float(best["pct"] - base["pct"].iloc[0]),
                "effect_mean": float(best["mean"] - base["mean"].iloc[0]),
            }
        )
    columns = [*ARM_KEYS, "best_point", "pct", "mean", "base_pct", "effect_pct", "effect_mean", "rank"]
    if not records:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(records).sort_values(["effect_pct", "effect_mean"], ascending=False, kind="stable")
    table["rank"] = table.groupby(["method", "seed"]).cumcount() + 1
    return table.reset_index(drop=True)[columns]


def violin_groups(rows: pd.DataFrame, best: pd.DataFrame, sign: int, grid_points: pd.Series) -> pd.DataFrame:
    """Per-row sign x y at each arm's best grid point, labelled with the groups it belongs to:
    ``all``, ``top-1``, ``top-3`` (the k best of each seed pooled), ``rank 1`` .. ``rank 3``.

    `grid_points`: the grid point of every row of `rows` (same index)."""
    frames = []
    for record in best.to_dict("records"):
        mine = rows[(rows["arm"] == record["arm"]) & np.isclose(grid_points, record["best_point"])]
        values = float(sign) * mine["y"].to_numpy(float)
        groups = ["all"]
        groups += [f"top-{k}" for k in (1, 3) if record["rank"] <= k]
        groups += [f"rank {record['rank']}"] if record["rank"] <= 3 else []
        for group in groups:
            frames.append(pd.DataFrame({"method": record["method"], "group": group, "value": values}))
    if not frames:
        return pd.DataFrame(columns=["method", "group", "value"])
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------- rendering


def _grid_points(view: _VectorView, config: dict[str, Any]) -> list[float] | None:
    coefficients = config.get("coefficients", {})
    if view.grid == "fraction":
        fractions = coefficients.get("fractions")
        return [float(f) for f in fractions] if fractions else None
    if coefficients.get("policy") == "fixed":
        return [float(v) for v in coefficients.get("values", [])]
    return None


def _calibrated(ctx: EvalReportContext) -> dict[str, float]:
    cal = ctx.bench.calibration
    if cal.empty:
        return {}
    iso = cal[cal["policy"] == "iso-kl"] if "policy" in cal else cal
    return dict(zip(iso["arm"], iso["calibrated_c"].astype(float), strict=True))


def _point_label(view: _VectorView, point: float) -> str:
    return f"{point:+g} c_iso" if view.grid == "fraction" and point else f"{point:+g}" if point else "0"


def _per_arm(view: _VectorView, ctx: EvalReportContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = ctx.rows()
    if rows.empty or "y" not in rows:
        return rows, pd.DataFrame()
    return rows, arm_grid(rows, view.sign, view.grid, _grid_points(view, ctx.config), _calibrated(ctx))


def _grid_title(view: _VectorView) -> str:
    unit = "fractions of each vector's iso-KL |c|" if view.grid == "fraction" else "fixed scales"
    return f"{view.eval}: {view.outcome} per method x scale ({unit}, all vectors averaged)"


def _scale_grid(view: ScaleGridView, ctx: EvalReportContext) -> list[str]:
    _, per_arm = _per_arm(view, ctx)
    if per_arm.empty:
        return []
    table = method_grid(per_arm)
    labels = [_point_label(view, p) for p in sorted(table["point"].unique())]
    lines = [f"### {_grid_title(view)}", ""]
    for value, title, fmt in (("pct", f"{view.outcome} %", "{:.1f}"), ("mean", "mean logit diff", "{:+.3f}")):
        wide = table.pivot(index="method", columns="point", values=value).reindex(
            list(dict.fromkeys(table["method"]))
        )
        wide.columns = labels
        text = wide.map(lambda v, f=fmt: f.format(v) if pd.notna(v) else "").reset_index()
        vectors = table.groupby("method", sort=False)["vectors"].max()
        text.insert(1, "vectors", text["method"].map(vectors))
        lines += [f"{title} ({view.outcome} logit difference = {view.sign:+d} x y):", ""]
        lines += [markdown_table(text), ""]
    return lines


def _vector_label(record: dict[Any, Any], seeds: int) -> str:
    variant = f" v{int(record['variant'])}" if pd.notna(record["variant"]) else ""
    return f"{record['method']}{variant}" + (f" (seed {record['seed']})" if seeds > 1 else "")


def _best_vectors(view: BestVectorsView, ctx: EvalReportContext) -> list[str]:
    _, per_arm = _per_arm(view, ctx)
    best = best_vectors(per_arm) if not per_arm.empty else pd.DataFrame()
    if best.empty:
        return []
    seeds = best["seed"].nunique()
    shown = best.head(view.top)
    text = pd.DataFrame(
        {
            "vector": [_vector_label(r, seeds) for r in shown.to_dict("records")],
            "best scale": [_point_label(view, p) for p in shown["best_point"]],
            f"{view.outcome} %": [f"{v:.1f}" for v in shown["pct"]],
            "effect vs baseline (pp)": [f"{v:+.1f}" for v in shown["effect_pct"]],
            "logit diff effect": [f"{v:+.3f}" for v in shown["effect_mean"]],
        }
    )
    grid = "fraction of its iso-KL |c|" if view.grid == "fraction" else "fixed scale"
    return [
        f"### {view.eval}: best individual vectors ({view.outcome}, by {grid})",
        "",
        f"Each vector at the {grid} (not 0) where the most answers are {view.outcome} answers; effect = "
        f"{view.outcome} % there minus at c = 0. Top {len(shown)} of {len(best)} vectors.",
        "",
        markdown_table(text),
        "",
    ]


def _vector_violins(view: VectorViolinsView, ctx: EvalReportContext) -> list[str]:
    rows, per_arm = _per_arm(view, ctx)
    best = best_vectors(per_arm) if not per_arm.empty else pd.DataFrame()
    if best.empty:
        return []
    calibrated = _calibrated(ctx)
    if view.grid == "fraction":
        points = (rows["coeff"] / rows["arm"].map(calibrated)).round(6)
    else:
        points = rows["coeff"].astype(float).round(6)
    data = violin_groups(rows, best, view.sign, points)
    band_data = data[data["method"].isin(view.band_methods)]
    band = (
        (float(band_data["value"].quantile(0.05)), float(band_data["value"].quantile(0.95)))
        if not band_data.empty
        else None
    )
    shown = data[~data["method"].isin(view.band_methods)]
    order = {g: i for i, g in enumerate(GROUPS)}
    methods = {m: i for i, m in enumerate(dict.fromkeys(shown["method"]))}
    shown = shown.sort_values(
        ["method", "group"],
        key=lambda col: col.map(methods if col.name == "method" else order),
        kind="stable",
    )
    summary = shown.groupby(["method", "group"], sort=False)["value"].agg(
        rows="size", median="median", mean="mean"
    )
    text = summary.reset_index().assign(
        median=lambda f: f["median"].map("{:+.3f}".format), mean=lambda f: f["mean"].map("{:+.3f}".format)
    )
    lines = [
        f"### {view.eval}: per-row {view.outcome} logit difference at each vector's best scale",
        "",
        "Groups: all vectors, top-1 and top-3 (the best k vectors of each seed pooled), ranks 1-3."
        + (
            f" Band ({', '.join(view.band_methods)} vectors at their best scale, 5-95%): "
            f"[{band[0]:+.3f}, {band[1]:+.3f}]."
            if band
            else ""
        ),
        "",
        markdown_table(text),
        "",
    ]
    from steerlab.report_vector_plots import plot_group_violins

    filename = f"vector_violins_{view.eval}_{view.grid}.png"
    path = plot_group_violins(
        shown, band, f"{view.eval}: {view.outcome} logit difference", ctx.plot_path(filename)
    )
    return lines + ctx.link(path, f"{view.eval} vector violins")


VIEW_RENDERERS.add(ScaleGridView.kind, _scale_grid)
VIEW_RENDERERS.add(BestVectorsView.kind, _best_vectors)
VIEW_RENDERERS.add(VectorViolinsView.kind, _vector_violins)


def declared_views_lines(results: BenchResults, plots: Any) -> list[str]:
    """Markdown for every ``[[report.views]]`` of the run's config (views of one eval, declared as data)."""
    lines: list[str] = []
    for document in results.config.get("report", {}).get("views", []):
        try:
            view = view_from_dict(document)
        except (TypeError, ValueError) as error:
            lines += [
                f"(config.toml [[report.views]] {document.get('kind')!r} could not be read: {error})",
                "",
            ]
            continue
        name = str(getattr(view, "eval", ""))
        if results.results.empty or name not in set(results.results["eval"]):
            continue
        ctx = EvalReportContext(name, results, results.spec(name), plots)
        lines += render_view(view, ctx)
    if lines:
        lines = ["## Vectors", "", *lines]
    return lines
