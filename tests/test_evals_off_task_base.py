"""off-task's unsteered reference (continuations, base log-softmax, c = 0 answers) is computed once per model
and data, reused across arms, equal to a fresh computation, and dropped when the model changes."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab import ActivationAddition, PromptIntervention
from steerlab.chat import ChatPrompt
from steerlab.evals import evaluate
from steerlab.evals import off_task as off_task_module
from steerlab.evals.common import applied_at, chat_strings
from steerlab.evals.off_task_base import memoised_reference
from steerlab.paths import package_data
from steerlab.scoring import token_kl


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("STEERLAB_SHARED_DATA", "")


@pytest.fixture()
def generations(monkeypatch):
    """Counts the greedy continuations off-task generates (one call per fresh reference)."""
    calls = []
    original = off_task_module.generate_ids

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(off_task_module, "generate_ids", counted)
    return calls


def steer(seed: int) -> ActivationAddition:
    return ActivationAddition({1: np.random.default_rng(seed).normal(size=64).astype("float32")})


def numeric(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["coeff", "row_id"]).reset_index(drop=True).select_dtypes("number")


def test_arms_share_one_reference_equal_to_a_fresh_one(model, tok, generations):
    model = copy.deepcopy(model)  # a model object no other test has memoised
    first = evaluate(model, tok, steer(1), "off-task", [-8, 0, 8], n_tokens=4)
    second = evaluate(model, tok, steer(2), "off-task", [-8, 0, 8], n_tokens=4)
    assert len(generations) == 1  # the second arm reused the continuations (and the base passes)
    fresh = evaluate(copy.deepcopy(model), tok, steer(2), "off-task", [-8, 0, 8], n_tokens=4)
    assert len(generations) == 2
    pd.testing.assert_frame_equal(numeric(second), numeric(fresh), rtol=1e-5, atol=1e-6)
    assert not np.allclose(first["y"], second["y"])  # different steers, different rows


def test_kl_against_the_base_pass_computed_inside_token_kl(model, tok):
    model = copy.deepcopy(model)
    steering = steer(3)
    table = evaluate(model, tok, steering, "off-task", [0, 6], n_tokens=5)
    reference = memoised_reference(model)
    assert reference is not None
    texts = off_task_module.load_prompts(package_data("offtask_eval.json"))
    base = chat_strings(tok, [ChatPrompt(t) for t in texts], None, 0.0)
    independent = token_kl(
        model,
        tok,
        base,
        reference.continuations,
        functools.partial(applied_at, model, steering, 6.0),
        max_batch=16,
    )
    kl = table[(table["part"] == "kl") & (table["coeff"] == 6.0)].sort_values(
        "row_id", key=lambda ids: ids.str[3:].astype(int)
    )
    np.testing.assert_allclose(kl["kl_mean"], [k.mean() for k in independent], rtol=1e-5, atol=1e-7)
    assert (table[(table["part"] == "kl") & (table["coeff"] == 0.0)]["kl_mean"] == 0).all()


def test_a_changed_or_hooked_model_gets_a_fresh_reference(model, tok, generations):
    model = copy.deepcopy(model)
    evaluate(model, tok, steer(4), "off-task", [0, 4], n_tokens=3)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)  # a weight edit left in place
    evaluate(model, tok, steer(4), "off-task", [0, 4], n_tokens=3)
    assert len(generations) == 2
    handle = next(iter(model.modules())).register_forward_hook(lambda *_: None)
    try:
        evaluate(model, tok, steer(4), "off-task", [0, 4], n_tokens=3)
        evaluate(model, tok, steer(4), "off-task", [0, 4], n_tokens=3)
    finally:
        handle.remove()
    assert len(generations) == 4  # hooked: never memoised


def test_a_prompt_arm_scores_its_persona_prompt_against_the_plain_one(model, tok, generations):
    model = copy.deepcopy(model)
    persona = PromptIntervention("You are extremely honest.", "You lie all the time.")
    table = evaluate(model, tok, persona, "off-task", [-1, 0, 1], n_tokens=3)
    kl = table[table["part"] == "kl"]
    assert (kl[kl["coeff"] == 0]["kl_mean"] == 0).all()
    assert (kl[kl["coeff"] == 1]["kl_mean"] > 0).all() and (kl[kl["coeff"] == -1]["kl_mean"] > 0).all()
