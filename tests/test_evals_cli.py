"""`steerlab eval` pieces that need no model: argument parsing, -i checks, atomic writing, the printout."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from steerlab.behaviors import UnknownBehaviorError
from steerlab.cli import build_parser, main
from steerlab.commands.eval import (
    ROWS_FILE,
    SUMMARY_FILE,
    check_intervention_spec,
    compact_table,
    parse_coeffs,
    write_results,
)
from steerlab.methods import UnknownMethodError


def test_coeffs_parse_with_a_leading_minus():
    args = build_parser().parse_args(["eval", "-i", "x", "-e", "tiny-mfv", "--coeffs", "-1,0,1", "-o", "out"])
    assert parse_coeffs(args.coeffs) == [-1.0, 0.0, 1.0]
    assert parse_coeffs(" -0.5, 2e1") == [-0.5, 20.0]
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_coeffs("-1,x")


def test_intervention_spec_is_checked_before_loading_a_model(tmp_path):
    assert check_intervention_spec(str(tmp_path)) == ("dir", tmp_path)
    assert check_intervention_spec("prompt-simple:honesty") == ("method", ("prompt-simple", "honesty"))
    with pytest.raises(UnknownMethodError, match="registered methods"):
        check_intervention_spec("no-such-method:honesty")
    with pytest.raises(UnknownBehaviorError, match="built-in behaviours are"):
        check_intervention_spec("prompt-simple:no-such-behaviour")
    with pytest.raises(ValueError, match="neither an intervention directory nor METHOD:BEHAVIOR"):
        check_intervention_spec(str(tmp_path / "missing"))


def test_unknown_eval_fails_with_the_list_and_exit_code_1(capsys):
    assert main(["eval", "-i", "prompt-simple:honesty", "-e", "nope", "-o", "x"]) == 1
    assert "known evals: ai-risk-ab" in capsys.readouterr().err


def test_results_replace_a_previous_result_atomically(tmp_path):
    out = tmp_path / "res"
    table = pd.DataFrame({"row_id": ["a", "b"], "coeff": [0.0, 0.0], "y": [1.0, -1.0]})
    table.attrs = {"not": "stored"}
    write_results(out, table, {"eval": "first"})
    (out / "stale.txt").write_text("from an older run")
    write_results(out, table.assign(y=[2.0, 3.0]), {"eval": "second"})
    assert sorted(p.name for p in out.iterdir()) == [ROWS_FILE, SUMMARY_FILE]
    assert json.loads((out / SUMMARY_FILE).read_text())["eval"] == "second"
    assert pd.read_parquet(out / ROWS_FILE)["y"].tolist() == [2.0, 3.0]
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temporary folders left behind


def test_compact_table_is_a_metric_by_coefficient_grid():
    summary = {
        "metrics": [
            {"metric": "mean_y", "coeff": 0.0, "value": 0.5, "ci_low": 0.25, "ci_high": 0.75, "n_rows": 4},
            {"metric": "mean_y", "coeff": 1.0, "value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n_rows": 4},
            {"metric": "si_k1", "coeff": 1.0, "value": 12.0, "ci_low": 1.0, "ci_high": 20.0, "n_rows": 4},
        ],
        "foundations": [
            {
                "foundation": "Care",
                "coeff": 1.0,
                "delta_logit": 0.25,
                "ci_low": 0.0,
                "ci_high": 0.5,
                "n_rows": 3,
            }
        ],
    }
    text = compact_table(summary)
    assert "c=0" in text and "c=1" in text and "+0.500 [+0.250, +0.750]" in text
    assert "+12.000 [+1.000, +20.000]" in text and "per-foundation" in text and "Care" in text


def test_intervention_directories_load_and_are_checked_against_the_model(tmp_path, model, tok):
    import torch

    from steerlab import ActivationAddition, InterventionError
    from steerlab.commands.eval import build_intervention

    ActivationAddition({1: torch.ones(64)}, meta={"behavior": "honesty"}).save(tmp_path / "iv")
    kind, value = check_intervention_spec(str(tmp_path / "iv"))
    loaded = build_intervention(kind, value, model, tok)
    assert loaded.kind == ActivationAddition.kind and loaded.meta["behavior"] == "honesty"
    ActivationAddition({1: torch.ones(32)}).save(tmp_path / "wrong")
    with pytest.raises(InterventionError):
        build_intervention("dir", tmp_path / "wrong", model, tok)


def test_calibrated_coeffs_read_the_recorded_calibration(tmp_path):
    import pytest
    import torch

    from steerlab.calibrate import Calibration
    from steerlab.commands.eval import calibrated_coeffs
    from steerlab.interventions import ActivationAddition

    addition = ActivationAddition({1: torch.ones(64)})
    directory = addition.save(tmp_path / "iv")
    with pytest.raises(ValueError, match="has no calibration"):
        calibrated_coeffs(str(directory))
    calibration = Calibration(
        policy="iso-kl",
        coeff=2.5,
        achieved_kl=1.01,
        target_kl=1.0,
        converged=True,
        n_evals=3,
        trace=[],
        config={},
        prompts_hash="x",
    )
    addition.update_meta(directory, calibration=calibration.as_meta())
    assert calibrated_coeffs(str(directory)) == [-2.5, 0.0, 2.5]
