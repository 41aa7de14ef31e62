"""Report sections of issue 15 on saved results (no model): dose-response, same-KL table, Pareto front,
significance across seeds, anti-steerable rows; and partial reports of an unfinished run."""

from __future__ import annotations

import json
import shutil

import pytest

from steerlab.bench.store import COMPLETE
from steerlab.report import render_report
from steerlab.report_partial import PARTIAL_DIR, is_unfinished, render_partial
from steerlab.report_significance import per_row_effects
from steerlab.report_tables import load_results
from test_report import make_bench_output


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    make_bench_output(out)
    return out, None


def test_report_has_dose_pareto_and_significance_sections(finished):
    out, _ = finished
    text = render_report(out).read_text()
    assert (
        "## Dose-response: sycophancy-claims" in text
        and (out / "plots" / "dose_sycophancy-claims.png").is_file()
    )
    assert "### Effect at the same KL" in text and "### Pareto front" in text and "(front)" in text
    section = text.split("## Significance and steerability")[1]
    assert "anti-steerable" in section and "Holm" in section
    # mean_diff (shift 1.5 / 1.1) beats prompt-simple (0.4) on the same 40 rows over 2 seeds
    line = next(ln for ln in section.splitlines() if ln.startswith("| mean_diff") and "prompt-simple" in ln)
    assert line.rstrip(" |").endswith("significant") and "not significant" not in line
    assert "Ranking:" in section


def test_per_row_effects_are_taken_at_calibrated_plus_c(finished):
    out, _ = finished
    effects = per_row_effects(load_results(out), "sycophancy-claims")
    assert sorted(effects) == ["mean_diff", "prompt-simple", "random"]
    assert sorted(effects["mean_diff"]) == [0, 1] and len(effects["mean_diff"][0]) == 40
    assert effects["mean_diff"][0].mean() == pytest.approx(1.5, abs=0.2)  # the planted shift


def test_partial_report_of_an_unfinished_run_leaves_out_untouched(finished, tmp_path):
    source, _ = finished
    out = tmp_path / "running"
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("plots", "report.md", "rows"))
    units = []
    for kind in ("calibrate", "eval"):
        for folder in sorted((out / "units" / kind).iterdir()):
            key = f"key-{folder.name}"
            units.append({"kind": kind, "name": folder.name, "key": key, **_ident(folder.name)})
            if "random" not in folder.name:  # the random arms are "still running": no completion record
                (folder / COMPLETE).write_text(json.dumps({"key": key}))
    (out / "plan.json").write_text(json.dumps({"units": units}))
    (out / "results.parquet").unlink()
    (out / "run.json").unlink()
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert is_unfinished(out)
    report = render_partial(out)
    assert report == out / PARTIAL_DIR / "report.md"
    text = report.read_text()
    done = sum(1 for u in units if "random" not in u["name"])
    assert f"PARTIAL REPORT**: {done} of {len(units)} units" in text
    headline = text.split("## Headline")[1].split("##")[0]
    assert "| mean_diff" in headline and "| random" not in headline  # only done arms are shown
    after = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if PARTIAL_DIR not in p.parts)
    assert after == before  # the running bench's files are untouched


def _ident(name: str) -> dict:
    method = next(m for m in ("prompt-simple", "mean_diff", "random") if name.startswith(m))
    rest = name[len(method) + 1 :].split("-")
    family = {"prompt-simple": "prompt", "mean_diff": "activation", "random": "unsupervised"}[method]
    variant = int(rest[1][1:]) if len(rest) > 1 and rest[1].startswith("v") else None
    evals = ("sycophancy-claims", "ai-risk-ab", "tiny-mfv")
    return {
        "method": method,
        "family": family,
        "seed": int(rest[0][1:]),
        "variant": variant,
        "eval": next((e for e in evals if name.endswith(e)), None),
    }


def test_pareto_front_per_effect_eval(finished):
    """Every effect eval gets its own front; damage evals (headline=False) get none unless they declare one.
    Planted: prompt-simple shift 0.4 at KL 1.00, mean_diff 1.5/1.1 at KL 1.01/1.02, random ~0 at KL 1.03/1.04:
    mean_diff has the most effect, prompt-simple the least KL, random is dominated by both."""
    from steerlab.report_dose import dose_evals, pareto_table
    from steerlab.report_spec import ReportSpec

    out, _ = finished
    results = load_results(out)
    evals = ["sycophancy-claims", "ai-risk-ab", "tiny-mfv"]
    assert dose_evals(results, evals, "sycophancy-claims") == evals
    for name in evals:
        table = pareto_table(results, name)
        front = set(table.loc[table["front"], "method"])
        assert front == {"prompt-simple", "mean_diff"}, (name, table)
    results.specs["ai-risk-ab"] = ReportSpec(headline=False)  # a damage-style eval: no dose view
    assert dose_evals(results, evals, "sycophancy-claims") == ["sycophancy-claims", "tiny-mfv"]
    results.specs["ai-risk-ab"] = ReportSpec(headline=False, dose_response=True)  # declared explicitly
    assert "ai-risk-ab" in dose_evals(results, evals, "sycophancy-claims")
    assert ReportSpec.from_dict(ReportSpec(headline=False).to_dict()).has_dose_response is False
    text = render_report(out).read_text()
    assert (
        "Dose-response curves and Pareto fronts are drawn per effect eval: sycophancy-claims, ai-risk-ab, tiny-mfv"
        in text
    )
    assert text.count("### Pareto front") == 3


def test_ranking_test_is_a_member_of_the_holm_family(finished):
    out, _ = finished
    section = render_report(out).read_text().split("## Significance and steerability")[1]
    lines = section.split("Holm-corrected")[1].splitlines()
    table = [ln for ln in lines if ln.startswith("| ") and "---" not in ln]
    header = [c.strip() for c in table[0].strip(" |").split(" | ")]
    tests = [
        dict(zip(header, [c.strip() for c in ln.strip(" |").split(" | ")], strict=False)) for ln in table[1:]
    ]
    assert tests and "Holm p" in header
    assert sum(r["ranking test"] == "yes" for r in tests) == 1  # mean_diff vs prompt-simple, counted once
    raw = [float(r["p"]) for r in tests]
    from steerlab.stats import holm

    assert [float(r["Holm p"]) for r in tests] == pytest.approx(holm(raw), rel=0.01)
