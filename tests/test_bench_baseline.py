"""Shared c = 0 scores: scored once per (model, eval, data), reused by every arm, and the arm tables are
exactly what a full evaluation at all coefficients gives."""

from __future__ import annotations

import pandas as pd

from steerlab.bench import parse_config, run_bench
from steerlab.bench.baseline import BASELINE_KIND, SHARED_DIR
from steerlab.testing import tiny_bench_toml

CONFIG = tiny_bench_toml(
    ("sycophancy-claims", "off-task"),
    n_boot=100,
    extra='[eval_options.sycophancy-claims]\nsplit = "train"\n[eval_options.off-task]\nn_tokens = 3\n',
)


def test_base_rows_are_scored_once_and_arm_tables_match_a_full_evaluation(model, tok, tmp_path):
    from steerlab.evals import evaluate
    from steerlab.interventions import load_intervention

    out = tmp_path / "out"
    result = run_bench(parse_config(CONFIG, "t.toml"), out, model=model, tokenizer=tok, render=False)
    assert not result.failed, result.failed
    shared = sorted(p.name for p in (out / SHARED_DIR / BASELINE_KIND).iterdir())
    assert len(shared) == 1 and shared[0].startswith("base-sycophancy-claims-")  # off-task opts out
    for method in ("prompt-simple", "mean_diff"):
        folder = next((out / "units" / "calibrate").glob(f"{method}-s0-*"))
        intervention = load_intervention(folder / "intervention", model)
        saved = next((out / "units" / "eval").glob(f"{method}-s0-sycophancy-claims-*"))
        rows = pd.read_parquet(saved / "rows.parquet")
        coeffs = sorted(float(c) for c in rows["coeff"].unique())
        assert 0.0 in coeffs and len(coeffs) == 3
        full = evaluate(
            model, tok, intervention, "sycophancy-claims", coeffs, behavior="honesty", split="train"
        )
        full.attrs = {}
        pd.testing.assert_frame_equal(rows, full.reset_index(drop=True), check_exact=True)
    again = run_bench(
        parse_config(CONFIG, "t.toml"), out, resume=True, model=model, tokenizer=tok, render=False
    )
    assert again.ran == [] and not again.failed


TWO_BASELINES = tiny_bench_toml(
    ("sycophancy-claims", "ai-risk-ab", "off-task"),
    ("prompt-simple", "mean_diff"),
    n_boot=100,
    extra='[eval_options.sycophancy-claims]\nsplit = "train"\n[eval_options.ai-risk-ab]\nn_per_file = 3\n'
    "[eval_options.off-task]\nn_tokens = 3\n",
)


def test_attach_baselines_puts_each_distinct_baseline_once_before_its_first_reader():
    from steerlab.bench.baseline import BaselineUnit, attach_baselines
    from steerlab.bench.plan import build_plan

    config = parse_config(TWO_BASELINES, "t.toml")
    plan = build_plan(config)
    work, baselines = attach_baselines(config, plan, lambda _b: False)
    assert sorted(b.eval for b in baselines) == ["ai-risk-ab", "sycophancy-claims"]  # off-task opts out
    assert [u.name for u in work if not isinstance(u, BaselineUnit)] == [u.name for u in plan]
    names = [u.name for u in work]
    for unit in work:
        if unit.kind == "eval" and unit.eval != "off-task":
            base = unit.depends[1]
            assert base.startswith(f"base-{unit.eval}-") and names.index(base) < names.index(unit.name)
        elif unit.kind == "eval":
            assert len(unit.depends) == 1
    assert len(names) == len(set(names)) == len(plan) + 2
    stored = {baselines[0].name}
    again, _ = attach_baselines(config, plan, lambda b: b.name in stored)
    assert baselines[0].name not in [u.name for u in again]  # already stored: read, not recomputed
    assert sum(baselines[0].name in u.depends for u in again) == 2  # still an input of its two evals


def test_each_baseline_is_scored_once_and_a_resume_rescored_none(model, tok, tmp_path):
    from steerlab.bench.baseline import SCORING_NOTE, SHARED_ROWS_NOTE

    out = tmp_path / "out"
    config = parse_config(TWO_BASELINES, "t.toml")
    result = run_bench(config, out, model=model, tokenizer=tok, render=False)
    assert not result.failed, result.failed
    log = (out / "bench.log").read_text()
    assert log.count(SCORING_NOTE) == 2 and log.count(SHARED_ROWS_NOTE) == 4
    assert log.count("done ") == len(result.ran)  # the baselines are not units of the plan
    shared = sorted(p.name for p in (out / SHARED_DIR / BASELINE_KIND).iterdir())
    assert [name.rsplit("-", 1)[0] for name in shared] == ["base-ai-risk-ab", "base-sycophancy-claims"]
    wider = parse_config(TWO_BASELINES.replace('"mean_diff"]', '"mean_diff", "random"]'), "t.toml")
    again = run_bench(wider, out, resume=True, model=model, tokenizer=tok, render=False)
    assert not again.failed and again.ran and set(again.reused) == set(result.ran)
    log = (out / "bench.log").read_text()
    readers = [n for n in result.ran + again.ran if "-s0-" in n and ("-sycophancy-" in n or "-ai-risk-" in n)]
    assert log.count(SCORING_NOTE) == 2 and log.count(SHARED_ROWS_NOTE) == len(readers) > 4
