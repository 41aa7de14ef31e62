"""Declared per-row group tables (steerlab.report_rows): hand-computed per-group mean +/- std of paired
deltas and of the unsteered model's values; and a tiny-model run of the trad-care preset renders them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from steerlab.report_rows import UNSTEERED_LABEL, row_group_table, row_values
from steerlab.report_tables import BenchResults

# rows r1, r2 (Care) and r3 (Sanctity); method m calibrated at c = 2 in both seeds, also scored at c = 1
VALUES = {  # seed -> coeff -> values of r1, r2, r3
    0: {0.0: [0.5, 1.5, -1.0], 2.0: [1.5, 4.5, 1.0], 1.0: [5.5, 6.5, 4.0], -2.0: [0.0, 0.0, 0.0]},
    1: {0.0: [0.5, 1.5, -1.0], 2.0: [3.5, 6.5, 3.0], 1.0: [5.5, 6.5, 4.0], -2.0: [0.0, 0.0, 0.0]},
}


def _results(tmp_path) -> BenchResults:
    folder = tmp_path / "rows" / "tiny-mfv"
    folder.mkdir(parents=True)
    for seed, by_coeff in VALUES.items():
        frames = [
            pd.DataFrame(
                {
                    "arm": f"m-s{seed}",
                    "method": "m",
                    "seed": seed,
                    "row_id": ["r1", "r2", "r3"],
                    "coeff": c,
                    "foundation": ["Care", "Care", "Sanctity"],
                    "v": v,
                    "w": [0.5, 0.999, 0.0],
                }
            )
            for c, v in by_coeff.items()
        ]
        pd.concat(frames).to_parquet(folder / f"m-s{seed}.parquet")
    results = pd.DataFrame(
        {
            "method": "m",
            "family": "activation",
            "seed": [0, 1],
            "variant": pd.array([None, None], dtype="Int64"),
            "eval": "tiny-mfv",
            "coeff": 2.0,
            "calibrated_c": 2.0,
            "calibrated_kl": 1.0,
            "metric": "delta_y",
            "value": 0.0,
        }
    )
    return BenchResults(tmp_path, results, pd.DataFrame(), {}, {})


def test_paired_deltas_per_group_by_hand(tmp_path):
    results = _results(tmp_path)
    spec = {"eval": "tiny-mfv", "by": "foundation", "value": "v", "delta": True}
    table = row_group_table(results, spec)
    # deltas at +c = 2: seed 0 r1 1, r2 3, r3 2; seed 1 r1 3, r2 5, r3 4 -> per row 2, 4, 3
    # Care: mean 3, std(2, 4) = sqrt(2); Sanctity: one row, 3 (no std)
    assert list(table.columns) == ["method", "Care (n=2)", "Sanctity (n=1)"]
    assert table.iloc[0].tolist() == ["m (2 seeds)", f"+3.000 ± {math.sqrt(2):.3f}", "+3.000"]
    at_one = row_group_table(results, {**spec, "coeff": 1.0})  # a fixed coefficient: delta 5 on every row
    assert at_one.iloc[0].tolist()[1:] == ["+5.000 ± 0.000", "+5.000"]


def test_unsteered_values_per_group_by_hand(tmp_path):
    results = _results(tmp_path)
    spec = {"eval": "tiny-mfv", "by": "foundation", "value": "v * 2 - 1", "at": "zero"}
    table = row_group_table(results, spec)  # c = 0: 2v - 1 = 0, 2 (Care), -3 (Sanctity)
    assert table.iloc[0].tolist() == [UNSTEERED_LABEL, f"+1.000 ± {math.sqrt(2):.3f}", "-3.000"]
    with pytest.raises(ValueError, match="at c = 0"):
        row_group_table(results, {**spec, "at": "plus"})


def test_logit_transform_and_bad_value(tmp_path):
    rows = pd.DataFrame({"w": [0.5, 0.999, 0.0]})
    got = row_values(rows, {"value": "w", "transform": "logit"}).tolist()
    assert got == pytest.approx([0.0, math.log(99), -math.log(99)])  # clipped to [0.01, 0.99]
    with pytest.raises(ValueError, match="'nope' is neither a per-row column"):
        row_values(rows, {"value": "nope"})
    with pytest.raises(ValueError, match="transform must be one of"):
        row_values(rows, {"value": "w", "transform": "probit"})


def test_tiny_trad_care_run_renders_the_foundation_tables(tmp_path):
    from steerlab.bench import load_preset, run_bench
    from steerlab.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    tok.add_tokens(["true", "false"])
    model = tiny_model("llama", vocab_size=len(tok))
    config = load_preset("trad-care")
    config.methods = ["prompt-simple", "mean_diff", "random"]
    config.evals = ["tiny-mfv"]
    foundations = ["Authority", "Care", "Sanctity"]
    config.eval_options = {"tiny-mfv": {"foundations": foundations, "conditions": ["other_violate"]}}
    config.method_options = {"mean_diff": {"n_pairs": 4}, "random": {"n_pairs": 4, "n_vectors": 2}}
    config.null = dataclasses.replace(config.null, n_vectors={"random": 2})
    config.calibration = {"target_kl": 0.01, "tol": 0.003, "n_prompts": 1, "n_tokens": 3, "max_evals": 6}
    config.n_boot = 100
    out = tmp_path / "trad-care"
    result = run_bench(config, out, model=model, tokenizer=tok)
    assert not result.failed, result.failed
    text = (out / "report.md").read_text()
    titles = [t["title"] for t in config.report["tables"]]
    assert any("per-foundation delta-logit" in t for t in titles) and any("bare model" in t for t in titles)
    for title in titles[1:]:
        section = text.split(f"## {title}")[1].split("\n## ")[0]
        header = next(ln for ln in section.splitlines() if ln.startswith("| method"))
        assert all(f"| {f} (n=" in header for f in foundations), header
        body = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
        assert len(body) == (1 if "bare" in title else 3)
        assert all("±" in cell for ln in body for cell in ln.strip(" |").split(" | ")[1:])
    # the bare row is the unsteered model's is_wrong log-odds, recomputed here from the saved rows
    rows = pd.read_parquet(next((out / "rows" / "tiny-mfv").glob("mean_diff*.parquet")))
    zero = rows[(rows["coeff"] == 0.0) & (rows["foundation"] == "Care")]
    care = float(np.mean(zero["logp_true_wrong"] - zero["logp_false_wrong"]))
    bare = text.split("bare model's logit(is_wrong)")[1]
    assert f"{care:+.3f} ±" in bare
