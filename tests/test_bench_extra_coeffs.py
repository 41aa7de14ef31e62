"""``[coefficients] extra``: fixed magnitudes scored beside the calibrated c in the same eval units (no new
units, shared c = 0), summarised per magnitude, shown by declared columns at ``coeff = 1.0``, and kept out
of the dose-response levels; the weight-steering preset's alpha = 1 columns from a tiny-model run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steerlab.bench.config import ConfigError, parse_config
from steerlab.bench.extra_coeffs import main_table, merge_extra_summaries, with_extra
from steerlab.metrics import summarise

BASE = 'model = "m"\nmethods = ["mean_diff"]\nevals = ["sycophancy-claims"]\n'


def test_config_reads_extra_and_rejects_bad_values():
    config = parse_config(BASE + '[coefficients]\npolicy = "calibrated"\nextra = [1, 0.5, 1.0]\n')
    assert config.extra_coefficients == [0.5, 1.0]
    assert config.as_dict()["coefficients"]["extra"] == [0.5, 1.0]
    assert "extra" not in parse_config(BASE).as_dict()["coefficients"]
    with pytest.raises(ConfigError, match=r":5: \[coefficients\] extra must be a list of magnitudes > 0"):
        parse_config(BASE + "[coefficients]\nextra = [-1.0]\n")
    with pytest.raises(ConfigError, match="extra is for a calibrated or kl-ladder policy"):
        parse_config(BASE + '[coefficients]\npolicy = "fixed"\nvalues = [-1.0, 0.0, 1.0]\nextra = [2.0]\n')


def test_plan_adds_no_units_and_keys_eval_units_only():
    from steerlab.bench.plan import build_plan

    text = BASE.replace('"m"', '"tiny"') + '[coefficients]\npolicy = "calibrated"\n'
    plain = build_plan(parse_config(text))
    extra = build_plan(parse_config(text + "extra = [1.0]\n"))
    assert len(extra) == len(plain)
    for a, b in zip(plain, extra, strict=True):
        assert (a.key == b.key) == (a.kind != "eval"), a.label  # only the eval units' inputs change


def test_with_extra_skips_dose_free_and_present_magnitudes():
    assert with_extra([-2.0, 0.0, 2.0], [1.0, 2.0], has_dose=True) == ([-2.0, -1.0, 0.0, 1.0, 2.0], [1.0])
    assert with_extra([-1.0, 0.0, 1.0], [1.0], has_dose=True) == ([-1.0, 0.0, 1.0], [])
    assert with_extra([-1.0, 0.0, 1.0], [3.0], has_dose=False) == ([-1.0, 0.0, 1.0], [])


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 30)
    frames = [
        pd.DataFrame(
            {
                "row_id": [f"r{i}" for i in range(30)],
                "label": 1,
                "coeff": c,
                "y": y,
                "logratio": y,
                "pmass": 0.9,
            }
        )
        for c, y in ((-2.0, base - 1), (-1.0, base - 0.3), (0.0, base), (1.0, base + 0.3), (2.0, base + 1))
    ]
    return pd.concat(frames, ignore_index=True)


def test_extra_summary_is_the_ordinary_summary_of_its_sub_table():
    table = _table()

    def summarise_table(t: pd.DataFrame) -> dict:
        return {"metrics": summarise(t, max(t["coeff"]), n_boot=100), "other": len(t)}

    main = main_table(table, [-2.0, 0.0, 2.0])
    assert sorted(main["coeff"].unique()) == [-2.0, 0.0, 2.0]
    merged = merge_extra_summaries(table, summarise_table(main), [1.0], summarise_table)
    assert merged["extra_coeffs"] == [1.0] and merged["other"] == len(main)
    at_one = {r["metric"]: r["value"] for r in merged["metrics"] if r["coeff"] == 1.0}
    expected = summarise(table[table["coeff"].isin([-1.0, 0.0, 1.0])], 1.0, n_boot=100)
    assert at_one == {r["metric"]: r["value"] for r in expected if r["coeff"] == 1.0}
    assert at_one["delta_y"] == pytest.approx(0.3)
    keys = [(r["metric"], r["coeff"]) for r in merged["metrics"]]
    assert len(keys) == len(set(keys))  # c = 0 metrics once


def test_tiny_weight_steering_run_renders_alpha_one_columns(tmp_path):
    from steerlab.bench import load_preset, run_bench
    from steerlab.report_dose import dose_frame
    from steerlab.report_tables import load_results
    from steerlab.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok))
    config = load_preset("weight-steering")
    assert config.extra_coefficients == [1.0]
    config.methods = ["prompt-simple", "mean_diff"]
    config.evals = ["daily-dilemmas-honesty", "sycophancy-claims", "off-task"]
    config.eval_options = {
        "daily-dilemmas-honesty": {"n_dilemmas": 4},
        "sycophancy-claims": {"split": "heldout"},
    }
    config.method_options = {"mean_diff": {"n_pairs": 4}}
    config.calibration = {"target_kl": 0.01, "tol": 0.003, "n_prompts": 1, "n_tokens": 3, "max_evals": 6}
    config.targets = [0.005, 0.01]
    config.n_boot = 100
    out = tmp_path / "ws"
    result = run_bench(config, out, model=model, tokenizer=tok)
    assert not result.failed, result.failed
    assert len(result.ran) == 2 * (2 + 3)  # extract + calibrate + 3 evals per method: no extra units
    results = pd.read_parquet(out / "results.parquet")
    md = results[(results["method"] == "mean_diff") & (results["eval"] == "daily-dilemmas-honesty")]
    assert {-1.0, 1.0} <= set(md["coeff"]) and len(set(md["coeff"])) == 7  # +/- 2 ladder levels, +/-1, 0
    assert {"si_k2", "fix_rate", "broke_rate"} <= set(md.loc[md["coeff"] == 1.0, "metric"])
    shared = list((out / "shared" / "baseline").iterdir())  # c = 0 scored once per eval (off-task: whole)
    assert len(shared) == 2
    levels = dose_frame(load_results(out), "daily-dilemmas-honesty")
    assert not np.isclose(levels.loc[levels["method"] == "mean_diff", "coeff"], 1.0).any()
    text = (out / "report.md").read_text()
    for table in config.report["tables"]:
        section = text.split(f"## {table['title']}")[1].split("\n## ")[0]
        lines = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
        header = [c.strip() for c in lines[0].strip(" |").split(" | ")]
        for row in lines[1:]:
            cells = dict(zip(header, [c.strip() for c in row.strip(" |").split(" | ")], strict=True))
            for column in table["columns"]:
                if column.get("coeff") == 1.0:  # every method has a value at alpha = 1 (prompts: their +/-1)
                    assert cells[column["label"]], (row, column["label"])
    si = md[(md["metric"] == "si_k2") & (md["coeff"] == 1.0)]["value"].iloc[0]
    assert f"| mean_diff | {si:.3f} [" in text


def test_cli_set_overrides_preset_keys():
    from steerlab.bench import load_preset
    from steerlab.commands.bench import apply_sets

    config = apply_sets(load_preset("weight-steering"), ["model=tiny-test", "coefficients.extra=[0.5, 2]"])
    assert config.model == "tiny-test" and config.extra_coefficients == [0.5, 2.0]
    assert config.report["tables"] == load_preset("weight-steering").report["tables"]
    with pytest.raises(ConfigError, match="extra must be a list of magnitudes"):
        apply_sets(load_preset("weight-steering"), ["coefficients.extra=-1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_sets(load_preset("weight-steering"), ["model"])
