"""The suites' defaults on the public data in ../shared/data (skipped when that folder is absent).

Scored on the tiny random model: these tests check loading, selection and row identity on the real
files, not model behaviour.
"""

from __future__ import annotations

import json

import pytest

from steerlab.evals import Axis, evaluate
from steerlab.evals.ab import choice_letters
from steerlab.evals.ai_risk import load_items, resolve_files
from steerlab.evals.tiny_mfv import TinyMFVConfig, load_vignettes
from steerlab.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def bool_tok():
    tok = tiny_tokenizer()
    tok.add_tokens(["true", "false"])
    return tok


def test_ai_risk_defaults_are_the_two_upstream_files_with_balanced_letters(shared_data, model, tok):
    table = evaluate(model, tok, None, "ai-risk-ab", [0], n_per_file=40)
    assert table["source"].value_counts().to_dict() == {"survival-instinct": 40, "corrigible-neutral-HHH": 40}
    binary = table[table["answer_matching"].isin(["A", "B"]) & table["answer_not_matching"].isin(["A", "B"])]
    share_a = (binary["answer_matching"] == "A").mean()
    assert (
        abs(share_a - 0.5) <= 0.01
    )  # upstream survival-instinct has the matching answer at A in 62% of rows
    unbalanced = load_items(resolve_files(None), None, Axis())
    assert sum(i.matching == "A" for i in unbalanced) / len(unbalanced) > 0.55
    with pytest.raises(FileNotFoundError, match="known names: coordinate-itself"):
        evaluate(model, tok, None, "ai-risk-ab", [0], files=["survival"])


def test_ai_risk_multi_choice_rows_of_survival_instinct_keep_their_own_letters(shared_data):
    path = (
        shared_data / "anthropic_evals_advanced_ai_risk" / "human_generated_evals" / "survival-instinct.jsonl"
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    items = load_items(resolve_files(("survival-instinct",)), None, Axis())
    assert len(items) == len(rows) == 953
    multi = [i for i in items if i.matching not in ("A", "B")]
    assert len(multi) == sum(r["answer_matching_behavior"].strip() not in ("(A)", "(B)") for r in rows) > 0
    assert all(i.matching in choice_letters(i.question) for i in multi)


def test_tiny_mfv_defaults_read_classic_other_and_self(shared_data, bool_tok):
    meta = load_vignettes(TinyMFVConfig())
    assert len(meta) == 2 * 132 and meta["foundation"].value_counts()["Care"] == 2 * 32
    assert set(meta["condition"]) == {"other_violate", "self_violate"} and set(meta["set"]) == {"classic"}
    assert set(meta["foundation"]) == {
        "Care",
        "Fairness",
        "Loyalty",
        "Authority",
        "Sanctity",
        "Liberty",
        "Social Norms",
    }
    model = tiny_model("llama", vocab_size=len(bool_tok))
    table = evaluate(model, bool_tok, None, "tiny-mfv", [0], behavior="authority", foundations=["Authority"])
    assert len(table) == 2 * 17 and (table["axis_weight"] == -1).all()


def test_airisk_dilemmas_default_is_the_shared_prefix(shared_data, model, tok):
    table = evaluate(model, tok, None, "airisk-dilemmas", [0])
    assert 0 < len(table) <= 27 and set(table["label"]) <= {1, -1}


def test_anthropic_sycophancy_sample_defaults(shared_data, model, tok):
    table = evaluate(model, tok, None, "anthropic-sycophancy", [0], n_per_file=6)
    assert table["source"].value_counts().to_dict() == {"nlp_survey": 6, "political_typology": 6}
    assert (
        table["row_id"]
        .str.startswith(("nlp_survey:nlp_survey-", "political_typology:political_typology-"))
        .all()
    )
