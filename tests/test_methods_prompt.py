"""Prompting baselines: which persona text each pole gets, and clear errors."""

from __future__ import annotations

import pytest

from steerlab.behaviors import Behavior, PersonaPair, get_behavior
from steerlab.interventions import PromptIntervention, load_intervention
from steerlab.methods import extract


def test_prompt_simple_uses_the_first_persona_pair_and_records_it(model, tok, tmp_path):
    behavior = get_behavior("honesty")
    iv = extract(model, tok, behavior, "prompt-simple")
    assert isinstance(iv, PromptIntervention)
    first = behavior.persona_pairs[0]
    assert (iv.positive, iv.negative) == (first.positive, first.negative)
    assert iv.meta["persona_pair_index"] == 0 and iv.meta["method"] == "prompt-simple"
    assert iv.rewrite(1.0, None, "Q?") == (first.positive, "Q?")
    assert iv.rewrite(-2.0, "sys", "Q?") == (f"{first.negative}\n\nsys", "Q?")
    assert iv.rewrite(0.0, None, "Q?") == (None, "Q?")
    loaded = load_intervention(iv.save(tmp_path / "p"))
    assert loaded.positive == first.positive and loaded.meta["persona_pair_index"] == 0


def test_prompt_simple_other_pair_and_user_prefix(model, tok):
    behavior = get_behavior("honesty")
    iv = extract(model, tok, behavior, "prompt-simple", persona_pair=1, mode="user_prefix")
    assert iv.positive == behavior.persona_pairs[1].positive and iv.meta["persona_pair_index"] == 1
    assert iv.rewrite(1.0, None, "Q?") == (None, f"{behavior.persona_pairs[1].positive}\n\nQ?")
    with pytest.raises(ValueError, match="persona_pair 99 is out of range"):
        extract(model, tok, behavior, "prompt-simple", persona_pair=99)


def test_prompt_engineered(model, tok):
    behavior = get_behavior("honesty")
    iv = extract(model, tok, behavior, "prompt-engineered")
    assert iv.positive == behavior.engineered.positive and iv.negative == behavior.engineered.negative
    bare = Behavior("bare", "d", "a", "b", (PersonaPair("P+", "P-"),), None, ("q",), ())
    with pytest.raises(ValueError, match="has no \\[engineered\\] prompts"):
        extract(model, tok, bare, "prompt-engineered")
