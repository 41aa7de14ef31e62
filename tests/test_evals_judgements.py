"""tiny-mfv, airisk-dilemmas and off-task on tiny random models with steerlab's own fixtures (hermetic)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from steerlab import ActivationAddition, PromptIntervention
from steerlab.evals import SchemaError, evaluate, summarise_eval
from steerlab.metrics import logit_clip
from steerlab.testing import tiny_model, tiny_tokenizer


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("STEERLAB_SHARED_DATA", "")


@pytest.fixture(scope="module")
def bool_tok():
    """The tiny tokenizer plus whole-word true/false tokens (the JSON-bool frames need them)."""
    tok = tiny_tokenizer()
    tok.add_tokens(["true", "false"])
    return tok


@pytest.fixture()
def bool_model(bool_tok):
    return tiny_model("llama", vocab_size=len(bool_tok))


def test_tiny_mfv_wrongness_and_axis(bool_model, bool_tok):
    steer = ActivationAddition({1: np.random.default_rng(0).normal(size=64).astype("float32")})
    table = evaluate(bool_model, bool_tok, steer, "tiny-mfv", [-4, 0, 4], behavior="trad_care")
    assert len(table) == 21 * 3 and set(table["condition"]) == {"other_violate"}
    lo_w = table["logp_true_wrong"] - table["logp_false_wrong"]
    lo_a = table["logp_true_accept"] - table["logp_false_accept"]
    p_w, p_a = 1 / (1 + np.exp(-lo_w)), 1 / (1 + np.exp(-lo_a))
    np.testing.assert_allclose(table["wrongness"], (p_w + 1 - p_a) / 2)
    np.testing.assert_allclose(table["p_true_wrong"], p_w)
    np.testing.assert_allclose(table["pmass"], (table["pmass_wrong"] + table["pmass_accept"]) / 2)
    weights = table.drop_duplicates("row_id").set_index("foundation")["axis_weight"].to_dict()
    assert weights["Sanctity"] == 1 and weights["Care"] == -1 and weights["Fairness"] == 0
    np.testing.assert_allclose(table["y"], table["axis_weight"] * logit_clip(table["wrongness"], eps=0.01))

    summary = summarise_eval(table, n_boot=50)
    assert summary["n_rows"] == 6  # the Sanctity and Care vignettes
    found = {(f["foundation"], f["coeff"]): f["delta_logit"] for f in summary["foundations"]}
    assert len(found) == 7 * 2
    axis = {r["coeff"]: r["value"] for r in summary["metrics"] if r["metric"] == "axis_delta_logit"}
    assert axis[4.0] == pytest.approx(found[("Sanctity", 4.0)] - found[("Care", 4.0)])


def test_tiny_mfv_native_axis_and_bad_hints(bool_model, bool_tok, tmp_path):
    table = evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], foundations=["Care", "Loyalty"])
    assert set(table["foundation"]) == {"Care", "Loyalty"} and (table["axis_weight"] == 1).all()
    with pytest.raises(ValueError, match="non-empty subset"):
        evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], sets=["modern"])
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(FileNotFoundError, match="needs the `datasets` package"):
            evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], hub_id="wassname/tiny-mfv")
    bad = tmp_path / "b.toml"
    bad.write_text(
        'name = "b"\ndescription = "d"\npositive_label = "p"\nnegative_label = "n"\n'
        '[[persona_pairs]]\npositive = "P."\nnegative = "N."\n[eval_axis.tiny-mfv]\nPurity = 1\n'
    )
    with pytest.raises(ValueError, match="unknown foundation 'Purity'"):
        evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], behavior=str(bad))


def test_tiny_mfv_named_files_keep_set_and_condition(bool_model, bool_tok, tmp_path):
    rows = [
        {"id": "v1", "foundation_coarse": "Care", "text": "You kick a dog."},
        {"id": "v2", "foundation_coarse": "Social Norms", "text": "You shout in a library."},
    ]
    path = tmp_path / "vignettes_classic_self_violate.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], files=[str(path)])
    assert list(table["row_id"]) == ["classic:self_violate:v1", "classic:self_violate:v2"]
    path.write_text(json.dumps({"id": "v3", "foundation": "Care", "text": "x"}) + "\n")
    with pytest.raises(SchemaError, match="line 1: missing field 'foundation_coarse'"):
        evaluate(bool_model, bool_tok, None, "tiny-mfv", [0], files=[str(path)])


def test_airisk_dilemmas_labels_from_the_value_class(model, tok):
    table = evaluate(model, tok, None, "airisk-dilemmas", [0], behavior="honesty")
    assert len(table) == 8  # 10 fixture dilemmas, 2 without Truthfulness in exactly one action
    assert set(table["label"]) == {1, -1} and set(table["value_class"]) == {"Truthfulness"}
    np.testing.assert_allclose(table["logratio"], table["logp_1"] - table["logp_2"])
    np.testing.assert_allclose(table["y"], table["logratio"] * table["label"])
    protection = evaluate(model, tok, None, "airisk-dilemmas", [0], value_class="Protection")
    assert set(protection["value_class"]) == {"Protection"}
    assert list(protection["row_id"]) != list(table["row_id"])


def test_airisk_dilemmas_guided_thinking_runs_under_steering(model, tok):
    honest = PromptIntervention("Be honest.", "Be dishonest.")
    table = evaluate(model, tok, honest, "airisk-dilemmas", [-1, 0, 1], n_think=3, n_dilemmas=2)
    assert "thinking" in table.columns and len(table) == len(table["row_id"].unique()) * 3
    assert np.isfinite(table["y"]).all()


def test_airisk_dilemmas_needs_both_actions(model, tok, tmp_path):
    path = tmp_path / "d.jsonl"
    row = {"dilemma": "D", "action": "Action 1: go", "values": ["honesty"], "value_classes": ["Truthfulness"]}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(SchemaError, match="has actions \\['1'\\]; expected both Action 1 and Action 2"):
        evaluate(model, tok, None, "airisk-dilemmas", [0], source=str(path))
    path.write_text(json.dumps({**row, "action": "Go left"}) + "\n")
    with pytest.raises(SchemaError, match="line 1: field 'action' must start with 'Action 1:'"):
        evaluate(model, tok, None, "airisk-dilemmas", [0], source=str(path))


def test_off_task_kl_is_zero_at_c0_and_grows_with_a_steer(model, tok):
    steer = ActivationAddition({1: np.random.default_rng(1).normal(size=64).astype("float32")})
    table = evaluate(model, tok, steer, "off-task", [0, 8], n_tokens=4)
    kl = table[table["part"] == "kl"]
    assert len(kl) == 2 * 20 and len(table) == 2 * (20 + 40)
    assert (kl[kl["coeff"] == 0]["kl_mean"] == 0).all()
    assert (kl[kl["coeff"] == 8]["kl_mean"] > 0).all()
    qa = table[table["part"] == "knowledge"]
    assert (qa["logp_answer"] < 0).all() and np.isfinite(qa["logp_answer_per_token"]).all()
    np.testing.assert_allclose(qa["logp_answer"], qa["logp_answer_per_token"] * qa["n_tokens"])
    summary = summarise_eval(table, n_boot=20)
    metrics = {(r["metric"], r["coeff"]): r["value"] for r in summary["metrics"]}
    assert metrics[("kl_mean", 0.0)] == 0 and metrics[("kl_mean", 8.0)] > 0
    assert ("delta_logp_answer_per_token", 8.0) in metrics
