"""Report sections for dose-response: effect vs achieved KL per method (one line per method, with CIs),
the effect interpolated at each KL level ("effect at the same KL"), and the Pareto front of effect vs
collateral damage. Reads saved results only (no torch).

The KL of each positive coefficient comes from the arm's recorded kl-ladder (``calibration_ladder`` in
the calibrate unit's intervention.json); without a ladder an arm has one point, at its calibrated KL.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab.report_tables import BenchResults, markdown_table, method_labels
from steerlab.stats import interpolate_at_kl, pareto_front

__all__ = [
    "DAMAGE_METRICS",
    "EFFECT_METRICS",
    "dose_evals",
    "dose_frame",
    "dose_lines",
    "dose_sections",
    "pareto_table",
    "same_kl_table",
]

# (metric, column title): the effect at +c, then the bidirectional SI, as the suites' summaries emit them.
EFFECT_METRICS = (("delta_y", "effect (delta y at +c)"), ("si_k2", "SI k=2"))
# (metric, column title, scale): collateral damage at +c, lower is better; any eval that emits the metric
# contributes (off-task emits kl_mean, the capability suite tax_accuracy and tax_ppl).
DAMAGE_METRICS = (("kl_mean", "off-task KL", 1.0), ("tax_accuracy", "capability tax (acc pts)", 100.0))


def _ladders(out: Path) -> dict[str, dict[float, float]]:
    """arm -> {|c|: achieved KL} from each calibrate unit's recorded ladder (empty without one)."""
    plan_path = out / "plan.json"
    if not plan_path.is_file():
        return {}
    ladders: dict[str, dict[float, float]] = {}
    for unit in json.loads(plan_path.read_text()).get("units", []):
        if unit.get("kind") != "calibrate":
            continue
        path = out / "units" / "calibrate" / unit["name"] / "intervention" / "intervention.json"
        try:
            meta = json.loads(path.read_text()).get("meta", {})
        except (OSError, json.JSONDecodeError):
            continue
        levels = meta.get("calibration_ladder") or []
        if levels:
            arm = "-".join(
                [unit["method"], f"s{unit['seed']}"]
                + ([f"v{unit['variant']}"] if unit.get("variant") is not None else [])
            )
            ladders[arm] = {round(abs(float(lv["coeff"])), 9): float(lv["achieved_kl"]) for lv in levels}
    return ladders


def _arm(frame: pd.DataFrame) -> pd.Series:
    variant = frame["variant"].astype("Int64").astype("string").fillna("")
    base = frame["method"] + "-s" + frame["seed"].astype(str)
    return base.where(variant == "", base + "-v" + variant)


def dose_frame(results: BenchResults, eval_name: str, metric: str = "delta_y") -> pd.DataFrame:
    """One row per (arm, +c): method, seed, variant, coeff, kl, value, ci_low, ci_high."""
    frame = results.results
    frame = frame[(frame["eval"] == eval_name) & (frame["metric"] == metric) & (frame["coeff"] > 0)].copy()
    if frame.empty:
        return frame
    frame["arm"] = _arm(frame)
    ladders = _ladders(results.out)

    def kl_of(row: pd.Series) -> float:
        ladder = ladders.get(row["arm"], {})
        if ladder:
            return ladder.get(round(float(row["coeff"]), 9), math.nan)
        return float(row["calibrated_kl"]) if np.isclose(row["coeff"], row["calibrated_c"]) else math.nan

    frame["kl"] = frame.apply(kl_of, axis=1)
    extra = [float(e) for e in results.config.get("coefficients", {}).get("extra", [])]
    if extra:  # [coefficients] extra points have no measured KL: they are not levels of the dose curve
        is_extra = np.isclose(frame["coeff"].to_numpy(dtype=float)[:, None], np.array(extra)[None, :]).any(
            axis=1
        )
        frame = frame[~(is_extra & frame["kl"].isna().to_numpy())]
    return frame[["method", "family", "seed", "variant", "arm", "coeff", "kl", "value", "ci_low", "ci_high"]]


def _method_curve(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and KL level (rank of +c within the arm): mean KL, mean effect, envelope of CIs."""
    frame = frame.copy()
    frame["level"] = frame.groupby("arm")["coeff"].rank(method="dense")
    return (
        frame.groupby(["method", "level"], sort=False)
        .agg(kl=("kl", "mean"), value=("value", "mean"), ci_low=("ci_low", "min"), ci_high=("ci_high", "max"))
        .reset_index()
    )


def same_kl_table(results: BenchResults, eval_name: str, targets: list[float]) -> pd.DataFrame:
    """Effect of each method interpolated at each target KL (NaN where the method never reached it)."""
    curve = _method_curve(dose_frame(results, eval_name))
    labels = method_labels(results)
    rows = []
    for method, group in curve.groupby("method", sort=False):
        row: dict[str, Any] = {"method": labels.get(str(method), str(method))}
        for target in targets:
            row[f"KL {target:g}"] = interpolate_at_kl(group["kl"].tolist(), group["value"].tolist(), target)
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(results: BenchResults, eval_name: str) -> pd.DataFrame:
    """Per method at its calibrated +c: effect, achieved KL and every damage metric found, front marked."""
    frame = results.results
    effect = dose_frame(results, eval_name)
    if effect.empty:
        return pd.DataFrame()
    main = effect[np.isclose(effect["coeff"], _calibrated(frame, effect))]
    rows = []
    for method, group in main.groupby("method", sort=False):
        row: dict[str, Any] = {
            "method": method,
            "effect": float(group["value"].mean()),
            "KL": float(group["kl"].mean()),
        }
        arms = set(group["arm"])
        for metric, title, scale in DAMAGE_METRICS:
            sel = frame[(frame["metric"] == metric) & (frame["coeff"] > 0)].copy()
            if sel.empty:
                continue
            sel["arm"] = _arm(sel)
            sel = sel[sel["arm"].isin(arms) & np.isclose(sel["coeff"], sel["calibrated_c"])]
            row[title] = float(sel["value"].mean()) * scale if len(sel) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    costs = [c for c in table.columns if c not in ("method", "effect")]
    table["front"] = pareto_front(table["effect"], *[table[c] for c in costs])
    return table


def _calibrated(frame: pd.DataFrame, effect: pd.DataFrame) -> np.ndarray:
    lookup = frame.drop_duplicates(["method", "seed", "variant"]).copy()
    lookup["arm"] = _arm(lookup)
    by_arm = dict(zip(lookup["arm"], lookup["calibrated_c"], strict=True))
    return np.array([by_arm.get(a, math.nan) for a in effect["arm"]], dtype=float)


def plot_dose(curve: pd.DataFrame, labels: dict[str, str], eval_name: str, path: Path) -> Path | None:
    """Effect vs achieved KL, one line per method, error bars = the CI envelope."""
    if curve.empty or curve["kl"].isna().all():
        return None
    from steerlab import report_plots

    plt = report_plots.plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, group in curve.groupby("method", sort=False):
        group = group.sort_values("kl")
        err = [group["value"] - group["ci_low"], group["ci_high"] - group["value"]]
        ax.errorbar(
            group["kl"],
            group["value"],
            yerr=err,
            marker="o",
            capsize=3,
            label=labels.get(str(method), str(method)),
        )
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("achieved KL (p95 per token, nats)")
    ax.set_ylabel("delta y at +c")
    ax.set_title(f"dose-response: {eval_name}")
    ax.legend(fontsize=7)
    return report_plots.save_figure(fig, path)


def dose_lines(results: BenchResults, eval_name: str, plots: Path) -> list[str]:
    """The dose-response, same-KL and Pareto sections (markdown lines) for one eval."""
    frame = dose_frame(results, eval_name)
    if frame.empty:
        return []
    labels = method_labels(results)
    coefficients = results.config.get("coefficients", {})
    targets = [float(t) for t in coefficients.get("targets", [])] or sorted(
        {float(results.config.get("calibration", {}).get("target_kl", 1.0))}
    )
    lines = [f"## Dose-response: {eval_name}", ""]
    curve = _method_curve(frame)
    if plot_dose(curve, labels, eval_name, plots / f"dose_{eval_name}.png"):
        lines += [
            "Effect (delta y at +c vs c = 0, 95% CI envelope over seeds) against the achieved KL of each level; "
            "prompting sits at its measured KL.",
            "",
            f"![dose-response](plots/dose_{eval_name}.png)",
            "",
        ]
    same = same_kl_table(results, eval_name, targets)
    if not same.empty:
        lines += [
            "### Effect at the same KL",
            "",
            "delta y interpolated linearly in KL between measured levels (through KL 0, effect 0); blank where a "
            "method never reached that KL.",
            "",
            markdown_table(
                same.map(
                    lambda v: (
                        f"{v:+.3f}"
                        if isinstance(v, float) and math.isfinite(v)
                        else ("" if isinstance(v, float) else v)
                    )
                )
            ),
            "",
        ]
    pareto = pareto_table(results, eval_name)
    if not pareto.empty:
        shown = pareto.copy()
        shown["method"] = [
            labels.get(m, m) + (" **(front)**" if f else "")
            for m, f in zip(shown["method"], shown["front"], strict=True)
        ]
        shown = shown.drop(columns=["front"]).map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)
        lines += [
            "### Pareto front: effect vs collateral damage",
            "",
            "At each method's calibrated +c: higher effect, lower KL and damage are better; a method is on the "
            "front when no other is at least as good on every column and better on one.",
            "",
            markdown_table(shown),
            "",
        ]
    return lines


def dose_evals(results: BenchResults, evals: list[str], headline_eval: str) -> list[str]:
    """The evals that get dose-response and Pareto sections: the headline eval, then every eval whose
    report declaration has a dose-response view (`ReportSpec.has_dose_response`), in run order."""
    chosen = [headline_eval] if headline_eval in evals else []
    return chosen + [e for e in evals if e != headline_eval and results.spec(e).has_dose_response]


def dose_sections(results: BenchResults, evals: list[str], headline_eval: str, plots: Path) -> list[str]:
    """Dose-response, same-KL and Pareto sections for each eval of `dose_evals`, after one line that says
    which evals they are (collateral-damage evals are costs on the fronts, not effects)."""
    names = dose_evals(results, evals, headline_eval)
    body: list[str] = []
    shown = []
    for name in names:
        lines = dose_lines(results, name, plots)
        if lines:
            shown.append(name)
            body += lines
    if not shown:
        return []
    note = (
        f"Dose-response curves and Pareto fronts are drawn per effect eval: {', '.join(shown)} (the headline eval "
        "and every eval whose report declares a dose-response view); damage evals "
        f"({', '.join(m[1] for m in DAMAGE_METRICS)}) are the costs of each front."
    )
    return [note, "", *body]
