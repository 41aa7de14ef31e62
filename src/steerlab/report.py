"""`steerlab report OUT`: tables and plots from a bench run's saved results (pandas + matplotlib, no torch).

Reads OUT/results.parquet, OUT/calibration.parquet, OUT/evals.json (each eval's declared report), OUT/tables/,
OUT/rows/, OUT/config.toml and OUT/run.json; writes OUT/report.md and OUT/plots/*.png. Nothing is recomputed
from a model, and no eval suite is named here: each eval's section is what its `ReportSpec` declares.

Arms: a method at one seed is one arm; the null-band methods (random vectors) have one arm per vector and
are shown as one row, "mean [min, max] over vectors", and as a grey band in the plots. Several seeds of a
method are shown as the mean over seeds with the envelope of the per-seed 95% CIs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab import report_plots
from steerlab.report_tables import (
    HEADLINE_METRICS,
    BenchResults,
    ReportError,
    headline_markdown,
    headline_table,
    load_results,
    markdown_table,
)
from steerlab.report_views import eval_section

__all__ = [
    "HEADLINE_METRICS",
    "BenchResults",
    "ReportError",
    "headline_table",
    "load_results",
    "render_report",
]

# ---------------------------------------------------------------------------------------------- the report


def history_note(history: list[dict[str, Any]]) -> str:
    """One sentence on an output built over several invocations; a killed one has no recorded time."""
    timed = [float(h["seconds"]) for h in history if "seconds" in h]
    untimed = len(history) - len(timed)
    minutes = f"{sum(timed) / 60:.1f} min in all"
    if untimed:
        minutes = f"{sum(timed) / 60:.1f} min in the {len(timed)} that finished ({untimed} ended early, time not recorded)"
    return f" This output took {len(history)} invocations (--resume), {minutes}, the first on {history[0].get('started', '?')}."


def render_report(out: str | Path) -> Path:
    """Write OUT/report.md and OUT/plots/*.png from the saved results; returns the report's path."""
    from steerlab.report_dose import dose_sections  # issue 15 sections, torch-free like this module
    from steerlab.report_partial import partial_note
    from steerlab.report_preset import declared_tables_lines
    from steerlab.report_significance import significance_lines
    from steerlab.report_vectors import declared_views_lines

    results = load_results(out)
    out = results.out
    plots = out / "plots"
    config, run = results.config, results.run
    evals = list(dict.fromkeys(results.results["eval"])) if not results.results.empty else []
    headline_eval = config.get("headline_eval") or next(
        (name for name in evals if results.spec(name).headline), evals[0] if evals else ""
    )
    policy = config.get("coefficients", {}).get("policy", "calibrated")
    target = config.get("calibration", {}).get("target_kl", 1.0)
    lines = [f"# steerlab bench: {config.get('behavior', '?')} on {config.get('model', '?')}", ""]
    lines += partial_note(run)
    when = run.get("started", time.strftime("%Y-%m-%d %H:%M"))
    history = run.get("history", [])
    earlier = ""
    if len(history) > 1:
        earlier = history_note(history)
    lines.append(
        f"Run {when}; wall time {run.get('seconds', float('nan')) / 60:.1f} min ({run.get('ran', '?')} units run, "
        f"{run.get('reused', '?')} reused of {run.get('units', '?')}).{earlier} Methods: "
        f"{', '.join(config.get('methods', []))}; seeds {config.get('seeds', [])}; evals: {', '.join(evals)}."
    )
    lines.append("")
    coeff_note = (
        f"each method at its iso-KL coefficient |c| (p95 per-token KL on off-task prompts = {target:g} nat, the "
        "worse of +c and -c); prompting has no coefficient and its measured KL is shown"
        if policy != "fixed"
        else f"fixed coefficients {config.get('coefficients', {}).get('values')}"
    )
    table = headline_table(results, headline_eval)
    lines += [f"## Headline: {headline_eval}", "", f"Policy: {coeff_note}."]
    if not table.empty:
        lines += [
            f"All methods are scored on the same {int(table['n_rows'].max())} rows (row identity checked). Values are "
            "at +c; brackets are 95% paired bootstrap CIs over rows "
            f"({config.get('n_boot', 1000)} resamples). SI = surgical informedness in percentage points (fixes minus "
            "k x breaks, averaged over the +c and -c arms, times the squared answer mass). The random row is the mean "
            "[min, max] over norm-matched random vectors, each calibrated like a method.",
            "",
            headline_markdown(table, policy),
            "",
        ]
        band = {}
        null_rows = table[table["null"]]
        if not null_rows.empty:
            band["si_k2"] = (float(null_rows["si_k2_low"].min()), float(null_rows["si_k2_high"].max()))
        path = report_plots.plot_si_bars(table[~table["null"]], band, headline_eval, plots / "si_bars.png")
        if path:
            lines += ["![SI bars](plots/si_bars.png)", ""]
    lines += declared_tables_lines(results)  # tables a preset declares as data ([[report.tables]])
    lines += declared_views_lines(results, plots)  # per-vector views declared as data ([[report.views]])
    lines += _calibration_section(results)
    for eval_name in evals:
        lines += eval_section(results, eval_name, plots)
    lines += dose_sections(results, evals, headline_eval, plots)  # per effect eval (steerlab.report_dose)
    if headline_eval in evals:  # significance across seeds and rows: the headline eval
        lines += significance_lines(results, headline_eval)
    failed = run.get("failed") or {}
    if failed:
        lines += (
            ["## Units that failed", ""] + [f"- `{name}`: {error}" for name, error in failed.items()] + [""]
        )
    lines += _reproduce_section(out, run)
    path = out / "report.md"
    from steerlab.bench.store import write_atomic

    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _calibration_section(results: BenchResults) -> list[str]:
    cal = results.calibration
    if cal.empty:
        return []
    show = pd.DataFrame(
        {
            "arm": cal["arm"],
            "policy": cal["policy"],
            "calibrated c": [f"{c:.4g}" for c in cal["calibrated_c"]],
            "KL +c": [f"{v:.3f}" for v in cal["kl_pos"]],
            "KL -c": [f"{v:.3f}" if np.isfinite(v) else "-" for v in cal["kl_neg"]],
            "converged": ["yes" if c else "NO" for c in cal["converged"]],
            "KL evals": cal["n_evals"],
            "seconds": [f"{s:.0f}" for s in cal["seconds"]],
        }
    )
    notes = [
        f"- {a}: {n}"
        for a, n, ok in zip(cal["arm"], cal["note"], cal["converged"], strict=True)
        if not ok and n
    ]
    return ["## Calibration", "", markdown_table(show), "", *notes, ""]


def _reproduce_section(out: Path, run: dict[str, Any]) -> list[str]:
    from steerlab.provenance import data_lines  # torch-free; kept local like every non-report import

    command = run.get("command", "steerlab bench -o OUT")
    config_text = (out / "config.toml").read_text() if (out / "config.toml").is_file() else ""
    return [
        *data_lines(run.get("data")),
        "## How to reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "with this config (also in `config.toml` beside this report; `steerlab bench config.toml -o OUT` reruns it):",
        "",
        "```toml",
        config_text.rstrip(),
        "```",
        "",
        "Per-row tables: `rows/<eval>/<arm>.parquet`; all metrics: `results.parquet`; calibration traces: "
        "`calibration.parquet`; log: `bench.log`. Re-render with `steerlab report OUT`.",
    ]
