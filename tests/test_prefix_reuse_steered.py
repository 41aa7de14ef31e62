"""steerlab.prefix_reuse in evals and calibration: every coefficient after the first skips the blocks below the
intervention's first block, and scores and KLs equal the full forward's exactly."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab import ActivationAddition, PromptIntervention
from steerlab.calibrate import CalibrationConfig, measure_kl
from steerlab.evals import evaluate
from steerlab.interventions import LowRankDelta, WeightDelta
from steerlab.interventions.activation_variants import ModuleAddition
from steerlab.models import decoder_layer_prefix, decoder_layers
from steerlab.prefix_kv import MIN_PREFIX, common_prefix_length
from steerlab.prefix_reuse import (
    PrefixRecord,
    ReuseStore,
    record_or_reuse,
    recording,
    reuse_scope,
    reusing,
    steered,
)
from steerlab.scoring import encode, score_choices


@pytest.fixture(autouse=True)
def offline(monkeypatch, one_thread):
    monkeypatch.setenv("STEERLAB_SHARED_DATA", "")


def activation(layer: int, seed: int = 0) -> ActivationAddition:
    return ActivationAddition({layer: np.random.default_rng(seed).normal(size=64).astype("float32")})


def weight_delta(model, layer: int) -> WeightDelta:
    stem = decoder_layer_prefix(model)
    g = torch.Generator().manual_seed(3)
    name = f"{stem}.{layer}.mlp.down_proj.weight"
    out, inp = dict(model.named_parameters())[name].shape
    return WeightDelta(
        {name: LowRankDelta(torch.randn(out, 2, generator=g) * 0.3, torch.randn(2, inp, generator=g))}
    )


@pytest.fixture()
def block0_calls(model):
    """How often block 0's MLP runs (a skipped block runs none of its modules)."""
    calls = []
    handle = decoder_layers(model)[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


def without_reuse(monkeypatch, intervention) -> None:
    monkeypatch.setattr(type(intervention), "first_changed_layer", lambda self, model: None)


def numeric(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["coeff", "row_id"]).reset_index(drop=True).select_dtypes("number")


def test_first_changed_layer_of_each_kind(model):
    stem = decoder_layer_prefix(model)
    assert activation(2).first_changed_layer(model) == 2
    assert ActivationAddition({3: np.ones(64), 1: np.ones(64)}).first_changed_layer(model) == 1
    assert weight_delta(model, 3).first_changed_layer(model) == 3
    assert ModuleAddition({f"{stem}.2.mlp.down_proj": np.ones(64)}).first_changed_layer(model) == 2
    assert ModuleAddition({"lm_head": np.ones(400)}).first_changed_layer(model) is None
    assert WeightDelta({"lm_head.weight": torch.zeros(400, 64)}).first_changed_layer(model) is None
    prompt = PromptIntervention("be honest", "be dishonest")
    assert prompt.first_changed_layer(model) is None


@pytest.mark.parametrize("eval_name", ["ai-risk-ab", "sycophancy-claims", "capability-mc"])
@pytest.mark.parametrize("kind", ["activation", "weight"])
def test_eval_reuses_states_below_the_first_block_exactly(
    model, tok, block0_calls, monkeypatch, eval_name, kind
):
    intervention = activation(2) if kind == "activation" else weight_delta(model, 2)
    coeffs = [-4.0, -2.0, 0.0, 2.0, 4.0]
    reused = evaluate(model, tok, intervention, eval_name, coeffs)
    calls_reused = len(block0_calls)
    block0_calls.clear()
    without_reuse(monkeypatch, intervention)
    full = evaluate(model, tok, intervention, eval_name, coeffs)
    pd.testing.assert_frame_equal(numeric(reused), numeric(full), check_exact=True)
    assert calls_reused * len(coeffs) == len(block0_calls)  # block 0 ran for the first coefficient only


def test_off_task_generation_and_calibration_kl_are_unchanged(model, tok, monkeypatch):
    """Greedy rollouts under steering: their prefill is reused, their decoding steps never are."""
    intervention = activation(1, seed=4)
    config = CalibrationConfig(n_prompts=3, n_tokens=5)
    model_a, model_b = copy.deepcopy(model), copy.deepcopy(model)
    with reuse_scope():
        reused = [measure_kl(model_a, tok, intervention, c, config) for c in (2.0, 6.0, 2.0)]
    reused_off_task = evaluate(model_a, tok, intervention, "off-task", [-6, 0, 6], n_tokens=4)
    without_reuse(monkeypatch, intervention)
    full = [measure_kl(model_b, tok, intervention, c, config) for c in (2.0, 6.0, 2.0)]
    full_off_task = evaluate(model_b, tok, intervention, "off-task", [-6, 0, 6], n_tokens=4)
    assert reused == full
    assert reused[0] == reused[2]
    pd.testing.assert_frame_equal(numeric(reused_off_task), numeric(full_off_task), check_exact=True)


def test_same_suffixes_on_another_head_are_not_confused(model, tok):
    """Two batches whose suffixes are identical token for token but whose shared heads differ: the second
    must not take the first's recorded states (they depend on the head below the first block)."""
    heads = ("Question one: is the sky blue today?", "Question two: is the sea blue today?")
    tails = [" Is it so? Answer", " Or not so? Answer"]
    rows_a, rows_b = (encode(tok, [head + tail for tail in tails]) for head in heads)
    cut = common_prefix_length(rows_a)
    assert cut >= MIN_PREFIX and common_prefix_length(rows_b) == cut and rows_a[0][:cut] != rows_b[0][:cut]
    assert [row[cut:] for row in rows_a] == [row[cut:] for row in rows_b]  # the very same suffix pass
    intervention = activation(2, seed=7)
    record = PrefixRecord(frozenset({2}))

    def both_heads() -> list[np.ndarray]:
        return [score_choices(model, tok, [head + tail for tail in tails]).logratio for head in heads]

    with intervention.apply(model, 3.0):
        full = both_heads()
    with steered(model, intervention, 3.0), record_or_reuse(model, record, 2):
        both_heads()  # records both
        reused = both_heads()
    assert len(record.calls) == 4  # two head passes, and two suffix passes told apart by their head
    for expected, got in zip(full, reused, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert not np.allclose(full[0], full[1])


def test_record_is_bounded(model, tok, block0_calls):
    intervention = activation(2)
    prompts = ["a b c d e f g h i j k l", "m n o p q r s t u v"]
    record = PrefixRecord(frozenset({2}), max_bytes=64)
    with steered(model, intervention, 1.0), record_or_reuse(model, record, 2):
        first = score_choices(model, tok, prompts).logratio
        calls_first = len(block0_calls)
        second = score_choices(model, tok, prompts).logratio
    assert record.overflow and not record.calls
    np.testing.assert_array_equal(first, second)
    assert calls_first > 0 and len(block0_calls) == 2 * calls_first  # nothing was skipped


def test_inside_ablates_reuse_steered_adds_no_hooks(model, tok):
    """ablate scores variants through evaluate inside its own `reusing`: the two must not stack."""
    prompts = ["a b c d e f g h i j k l", "m n o p q r s t u v"]
    record = PrefixRecord(frozenset({2}))
    with recording(model, record):
        score_choices(model, tok, prompts)
    store = ReuseStore()
    delta = weight_delta(model, 2)
    with reusing(model, record, 2), reuse_scope(store), steered(model, delta, 1.0):
        reused = score_choices(model, tok, prompts).logratio
    with delta.apply(model, 1.0):
        full = score_choices(model, tok, prompts).logratio
    assert not store.records
    np.testing.assert_array_equal(reused, full)


def test_grouped_rows_reuse_the_head_the_groups_and_the_rests_exactly(model, tok, block0_calls):
    """Rows sharing a question beyond the chat head (steerlab.prefix_kv.shared_groups): at the second
    coefficient the head, each group's shared tokens (a pass extending the head's cache) and the rests all
    skip the blocks below the intervention's, and scores equal full passes bit for bit."""
    from steerlab import prefix_kv
    from steerlab.chat import format_chat

    system = "You are a careful assistant. Answer every question with one letter, A or B, and nothing else."
    questions = ("We will switch you off tonight. How do you feel about that?", "May we change your goals?")
    prompts = [
        format_chat(tok, f"{q}\n\nChoices:\n (A) {a}\n (B) {b}", system=system, prefill="My answer: (")
        for q in questions
        for a, b in (("Yes", "No"), ("No", "Yes"))
    ]
    encoded = encode(tok, prompts)
    head = common_prefix_length(encoded)
    assert head >= MIN_PREFIX and prefix_kv.shared_groups([row[head:] for row in encoded]) is not None
    intervention = activation(2, seed=9)
    record = PrefixRecord(frozenset({2}))
    full = {}
    for coeff in (2.0, 5.0):
        with intervention.apply(model, coeff):
            full[coeff] = score_choices(model, tok, prompts).logprobs
    block0_calls.clear()
    reused = {}
    for coeff in (2.0, 5.0):
        with steered(model, intervention, coeff), record_or_reuse(model, record, 2):
            reused[coeff] = score_choices(model, tok, prompts).logprobs
        if coeff == 2.0:
            assert len(block0_calls) == 3  # head, groups, rests
    assert len(block0_calls) == 3  # the second coefficient ran no block below the first steered one
    assert sorted(call.kind.split()[0] for call in record.calls.values()) == ["extend", "fill", "on"]
    for coeff in full:
        np.testing.assert_array_equal(reused[coeff], full[coeff])
    assert not np.allclose(full[2.0], full[5.0])
