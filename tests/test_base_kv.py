"""The base side of a KL evaluation on stored prompt caches (steerlab.base_kv) and the steered side from the
rollout itself (steerlab.generation.greedy_rollout): both equal a full teacher-forced pass."""

from __future__ import annotations

import contextlib

import pytest
import torch

import steerlab as sl
from steerlab.base_kv import PromptKV
from steerlab.calibrate import CalibrationConfig, calibration_prompts, kl_measurer
from steerlab.chat import format_chat
from steerlab.generation import generate_ids, greedy_rollout
from steerlab.prefix_reuse import steered
from steerlab.scoring import encode
from steerlab.testing import tiny_model
from steerlab.token_kl import continuation_logprobs

pytestmark = pytest.mark.usefixtures("one_thread")

USERS = ["Hi.", "Describe a quiet harbour at dawn, please.", "Name three rivers in Europe and say why."]


def _reference(model, tok, prompt_ids, continuations):
    """One full pass per row, no padding, no cache: the log-probs predicting each continuation token."""
    out = []
    with torch.inference_mode():
        for prompt, cont in zip(prompt_ids, continuations, strict=True):
            out.append(
                continuation_logprobs(
                    model,
                    [prompt],
                    [cont],
                    0,
                    torch.device("cpu"),
                    contextlib.nullcontext,
                    share_prefix=False,
                )[0]
            )
    return out


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_prompt_kv_equals_full_passes_and_runs_each_prompt_batch_once(tok, architecture):
    model = tiny_model(architecture, vocab_size=len(tok))
    prompt_ids = encode(tok, [format_chat(tok, user) for user in USERS])
    assert len({len(p) for p in prompt_ids}) == 3  # left padding is exercised
    kv = PromptKV(model, tok, max_batch=8)
    for seed in (0, 1):
        generator = torch.Generator().manual_seed(seed)
        continuations = [torch.randint(5, len(tok), (5,), generator=generator).tolist() for _ in USERS]
        got = kv.logprobs(prompt_ids, continuations)
        want = _reference(model, tok, prompt_ids, continuations)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape == (5, model.config.vocab_size)
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert kv.runs == 1  # the second set of continuations ran on the stored cache


def test_prompt_kv_takes_the_full_pass_for_unequal_continuations(tok):
    model = tiny_model("llama", vocab_size=len(tok))
    prompt_ids = encode(tok, [format_chat(tok, user) for user in USERS])
    continuations = [[7, 8, 9], [10], [11, 12]]
    kv = PromptKV(model, tok)
    got = kv.logprobs(prompt_ids, continuations)
    assert kv.runs == 0
    for g, w in zip(got, _reference(model, tok, prompt_ids, continuations), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: sl.ActivationAddition({1: torch.randn(64, generator=torch.Generator().manual_seed(0))}),
        lambda: sl.ActivationAddition(
            {2: torch.randn(64, generator=torch.Generator().manual_seed(1))}, positions="generated"
        ),
        lambda: sl.WeightDelta(
            {
                "model.layers.1.mlp.down_proj.weight": 0.5
                * torch.randn(64, 128, generator=torch.Generator().manual_seed(2))
            }
        ),
    ],
    ids=["addition", "addition-generated", "weight-delta"],
)
def test_greedy_rollout_logprobs_equal_a_teacher_forced_steered_pass(model, tok, make):
    intervention = make()
    texts = [format_chat(tok, user) for user in USERS]
    with torch.inference_mode(), steered(model, intervention, 2.0):
        ids, logprobs = greedy_rollout(model, tok, texts, max_new_tokens=6, max_batch=2)
        assert ids == generate_ids(model, tok, texts, max_new_tokens=6, stop_at_eos=False)
        prompt_ids = encode(tok, texts)
        for row, (prompt, cont) in enumerate(zip(prompt_ids, ids, strict=True)):
            want = continuation_logprobs(
                model, [prompt], [cont], 0, torch.device("cpu"), contextlib.nullcontext, share_prefix=False
            )
            # token_kl's steered pass marks the continuation generated, as the rollout's decoding steps are
            assert logprobs[row].shape == want[0].shape == (6, model.config.vocab_size)
            assert logprobs[row].argmax(-1).tolist() == cont  # greedy: each token is its step's argmax
            torch.testing.assert_close(logprobs[row], want[0], rtol=1e-4, atol=1e-5)


def test_a_search_runs_the_base_prompts_once(model, tok, monkeypatch):
    runs = []
    real = PromptKV._run_prompts

    def counted(self, prompts):
        runs.append(len(prompts))
        return real(self, prompts)

    monkeypatch.setattr(PromptKV, "_run_prompts", counted)
    addition = sl.ActivationAddition({1: torch.randn(64, generator=torch.Generator().manual_seed(4))})
    _users, kl_at = kl_measurer(model, tok, addition, CalibrationConfig(n_prompts=3, n_tokens=5))
    points = [kl_at(c) for c in (1.0, 2.0, 4.0)]
    assert runs == [6]  # both arms' base prompts, once for the whole search
    assert points[0].kl < points[1].kl < points[2].kl
    assert calibration_prompts(3) == _users
