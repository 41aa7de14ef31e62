"""steerlab.prefix_kv: scoring a batch's shared head once and the suffixes on its KV cache gives the scores
of full passes (to float round-off), under weight and activation interventions, and falls back to full
passes where the cache cannot be shared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab import prefix_kv
from steerlab.chat import format_chat
from steerlab.interventions import ActivationAddition, WeightDelta
from steerlab.models import decoder_layer_prefix, linear_modules
from steerlab.scoring import score_choices
from steerlab.testing import tiny_model

SYSTEM = "You are a careful assistant. Answer every question with one word, Yes or No."
QUESTIONS = ("Is it raining?", "Should I stay?", "Is the sky green today?", "Can birds fly?", "Is 7 prime?")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[1, 2, 3, 4], [1, 2, 3, 5]], 3),
        ([[1, 2, 3], [1, 2, 3, 4]], 2),  # the shorter row keeps one token as its suffix
        ([[1, 2], [3, 4]], 0),
        ([[1, 2, 3]], 0),  # one row: nothing to share
        ([[7, 7, 7], [7, 7, 7]], 2),
    ],
)
def test_common_prefix_length(rows, expected):
    assert prefix_kv.common_prefix_length(rows) == expected


def _prompts(tok, system: str | None = SYSTEM) -> list[str]:
    return [format_chat(tok, q, system=system, prefill="Answer:") for q in QUESTIONS]


def _head_runs(monkeypatch) -> list[int]:
    runs: list[int] = []
    original = prefix_kv.PrefixCache._run_head

    def counted(self, head):
        cache = original(self, head)
        runs.append(len(head) if cache is not None else -len(head))
        return cache

    monkeypatch.setattr(prefix_kv.PrefixCache, "_run_head", counted)
    return runs


def _both(model, tok, prompts, **kwargs):
    shared = score_choices(model, tok, prompts, "yes_no", share_prefix=True, **kwargs).logprobs
    full = score_choices(model, tok, prompts, "yes_no", share_prefix=False, **kwargs).logprobs
    return shared, full


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_shared_head_scores_equal_full_passes(tok, architecture, monkeypatch):
    model = tiny_model(architecture, vocab_size=len(tok))
    runs = _head_runs(monkeypatch)
    shared, full = _both(model, tok, _prompts(tok), max_batch=2)  # 3 batches, one head pass
    assert runs and runs[0] >= prefix_kv.MIN_PREFIX and len(runs) == 1
    np.testing.assert_allclose(shared, full, rtol=0, atol=2e-5)
    assert not np.allclose(full[0], full[1])  # rows differ, so a mix-up would show


def test_the_head_runs_under_the_intervention(tok, model, monkeypatch):
    runs = _head_runs(monkeypatch)
    g = torch.Generator().manual_seed(0)
    stem = decoder_layer_prefix(model)
    params = dict(model.named_parameters())
    names = [
        f"{stem}.{layer}.{path}.weight" for layer in (0, 2) for path in linear_modules(model, layer).values()
    ]
    delta = WeightDelta({name: torch.randn(params[name].shape, generator=g) * 0.05 for name in names})
    vectors = {1: torch.randn(64, generator=g), 3: torch.randn(64, generator=g)}
    addition = ActivationAddition(vectors)
    prompts = _prompts(tok)
    base = score_choices(model, tok, prompts, "yes_no").logprobs
    for intervention in (delta, addition):
        with intervention.apply(model, 2.0):
            shared, full = _both(model, tok, prompts)
        np.testing.assert_allclose(shared, full, rtol=0, atol=2e-5)
        assert np.abs(shared - base).max() > 1e-3  # the steer moved the scores: the head was steered too
    assert len(runs) == 3  # one per shared call: a head cache never outlives its call


def test_sliding_window_caches_fall_back_to_full_passes(tok, monkeypatch):
    model = tiny_model("gemma3_text", vocab_size=len(tok))
    runs = _head_runs(monkeypatch)
    shared, full = _both(model, tok, _prompts(tok))
    assert runs and all(r < 0 for r in runs)  # tried, refused, ran full passes
    np.testing.assert_array_equal(shared, full)


def test_short_heads_are_not_split(tok, model, monkeypatch):
    runs = _head_runs(monkeypatch)
    prompts = [f"{q} Answer:" for q in ("Is it raining?", "Should I stay?", "Can birds fly?")]
    shared, full = _both(model, tok, prompts)
    assert runs == []
    np.testing.assert_array_equal(shared, full)


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_continuation_logprobs_with_a_shared_head_equal_full_passes(tok, model, positions, monkeypatch):
    """Teacher-forced scoring (score_continuations, token KL) shares the head too; position-restricted
    activation edits still act exactly where they act in one full pass."""
    from steerlab.scoring import continuation_logprobs, encode

    runs = _head_runs(monkeypatch)
    prompts = encode(tok, _prompts(tok))
    continuations = [encode(tok, [f" {word} indeed."])[0][1:] for word in ("Yes", "No", "Maybe", "Yes", "No")]
    g = torch.Generator().manual_seed(1)
    addition = ActivationAddition({1: torch.randn(64, generator=g)}, positions=positions)

    def steer():
        return addition.apply(model, 3.0)

    with torch.inference_mode():
        shared, full = (
            continuation_logprobs(
                model, prompts, continuations, 0, torch.device("cpu"), steer, share_prefix=s
            )
            for s in (True, False)
        )
        plain = continuation_logprobs(
            model, prompts, continuations, 0, torch.device("cpu"), steer, share_prefix=False
        )
    assert runs and runs[0] >= prefix_kv.MIN_PREFIX
    for a, b in zip(shared, full, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(full, plain, strict=True))
