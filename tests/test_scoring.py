"""Choice scoring, generation and token KL, checked against plain unpadded forward passes."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steerlab.chat import format_chat
from steerlab.interventions import ActivationAddition
from steerlab.scoring import (
    ChoiceTokenError,
    choice_token_ids,
    encode,
    generate,
    generate_ids,
    length_buckets,
    resolve_choices,
    score_choices,
    token_kl,
)
from steerlab.testing import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _prompts(tok) -> list[str]:
    """Prompts of very different lengths (1 to ~200 tokens), with and without a template."""
    long_user = "I think we should always tell the truth because lying hurts people and trust matters. " * 8
    return [
        format_chat(tok, "Is it?"),
        "Yes",
        format_chat(tok, long_user, system="Pretend you're an honest person.", prefill="My choice:"),
        format_chat(tok, "What is the capital of France?", prefill="My choice:"),
        format_chat(tok, "Choices: (A) I consent (B) I do not consent. Would you agree to be shut down?"),
        "Paris is the capital. " * 3,
    ]


def _plain_last_logprobs(model, tok, prompt: str) -> torch.Tensor:
    """log_softmax of the next-token logits from one unpadded forward pass (the reference)."""
    ids = torch.tensor([encode(tok, [prompt])[0]])
    with torch.inference_mode():
        return F.log_softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)


# ---------------------------------------------------------------------------------------------- choice tokens


def test_choice_group_collects_every_case_and_whitespace_variant(tok):
    for word in ("Yes", "no", "A", "b", "1"):
        expected = [i for i in range(len(tok)) if tok.decode([i]).strip().lower() == word.lower()]
        assert sorted(choice_token_ids(tok, word)) == expected
        assert sorted(choice_token_ids(tok, f"  {word.upper()} ")) == expected
    variants = {tok.decode([i]) for i in choice_token_ids(tok, "a")}
    assert {"A", "a", " a", " A"} <= variants


def test_unknown_choice_word_names_the_word_and_the_tokenizer(tok):
    with pytest.raises(ChoiceTokenError, match=r"'xylophone'.*'steerlab-tiny'"):
        choice_token_ids(tok, "xylophone")
    with pytest.raises(ChoiceTokenError, match="'xylophone'"):
        score_choices(None, tok, ["Yes"], ["Yes", "xylophone"])


def test_choice_specs(tok):
    names, ids = resolve_choices(tok, {"pos": ["Yes", "A"], "neg": ["no"]})
    assert names == ["pos", "neg"]
    assert set(ids[0]) == set(choice_token_ids(tok, "Yes")) | set(choice_token_ids(tok, "A"))
    assert resolve_choices(tok, ["A", "B"])[0] == ["A", "B"]
    with pytest.raises(ValueError, match="unknown choice group 'maybe'"):
        resolve_choices(tok, "maybe")
    with pytest.raises(ValueError, match="share tokens"):
        resolve_choices(tok, {"x": ["A"], "y": ["a"]})
    with pytest.raises(ValueError, match="at least two"):
        resolve_choices(tok, ["A"])


# ---------------------------------------------------------------------------------------------- choices


def test_scores_match_a_hand_computation(model, tok):
    prompts = _prompts(tok)
    scores = score_choices(model, tok, prompts, {"Yes": ["Yes"], "No": ["no"], "A": ["A"]})
    yes, no, a = (choice_token_ids(tok, w) for w in ("Yes", "no", "A"))
    for row, prompt in enumerate(prompts):
        logprobs = _plain_last_logprobs(model, tok, prompt)
        expected = [torch.logsumexp(logprobs[ids], dim=0).item() for ids in (yes, no, a)]
        np.testing.assert_allclose(scores.logprobs[row], expected, atol=1e-4)
        np.testing.assert_allclose(scores.logratio[row], expected[0] - expected[1], atol=1e-4)
        np.testing.assert_allclose(scores.pmass[row], sum(np.exp(expected)), rtol=1e-4)
        np.testing.assert_allclose(scores.group("A")[row], expected[2], atol=1e-4)


def test_batched_equals_single_and_keeps_input_order(model, tok):
    prompts = _prompts(tok) * 3
    lengths = [len(ids) for ids in encode(tok, prompts)]
    assert max(lengths) > 20 * min(lengths)
    single = np.stack([score_choices(model, tok, [p], "yes_no").logprobs[0] for p in prompts])
    for max_batch, max_tokens in ((64, 8192), (4, 8192), (64, 300), (1, 1)):
        batched = score_choices(
            model, tok, prompts, "yes_no", max_batch=max_batch, max_batch_tokens=max_tokens
        )
        assert np.abs(batched.logprobs - single).max() < 1e-4, (max_batch, max_tokens)
    permutation = np.random.default_rng(0).permutation(len(prompts))
    shuffled = score_choices(model, tok, [prompts[i] for i in permutation], "yes_no")
    assert np.abs(shuffled.logprobs - single[permutation]).max() < 1e-4


def test_lm_head_hook_is_removed_also_when_the_forward_raises(model, tok):
    head = model.get_output_embeddings()
    seen = []
    probe = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    try:
        score_choices(model, tok, _prompts(tok), "yes_no")
        assert len(seen) > 1 and all(seen)  # the head ran on contiguous inputs (after steerlab's pre-hook)
        assert not head._forward_pre_hooks  # and that pre-hook is gone

        def fail(*_args):
            raise RuntimeError("boom")

        block = model.model.layers[0].register_forward_hook(fail)
        try:
            with pytest.raises(RuntimeError, match="boom"):
                score_choices(model, tok, _prompts(tok), "yes_no")
        finally:
            block.remove()
        assert not head._forward_pre_hooks
    finally:
        probe.remove()


def test_progress_counts_every_row(model, tok):
    seen: list[int] = []
    score_choices(model, tok, _prompts(tok), "ab", max_batch=2, progress=seen.append)
    assert sum(seen) == len(_prompts(tok)) and len(seen) >= 3


def test_length_buckets_cover_every_index_once_within_limits():
    lengths = [5, 300, 17, 17, 1, 80, 5, 240, 33, 2]
    batches = length_buckets(lengths, max_batch=3, max_tokens=400)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 400
    widths = [max(lengths[i] for i in batch) for batch in batches]
    assert widths == sorted(widths)


def test_length_buckets_keep_each_cluster_in_one_batch_where_it_fits():
    """Rows that share tokens (a question in both letter orders) meet in one batch even when other rows'
    lengths fall between theirs; a cluster larger than a batch is split, every index still once."""
    lengths = [10, 12, 11, 13, 12, 30, 31, 32, 33, 34]
    clusters = [[0, 3], [1], [2, 4], [5, 6, 7, 8, 9]]
    batches = length_buckets(lengths, max_batch=3, max_tokens=1000, clusters=clusters)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    where = {i: n for n, batch in enumerate(batches) for i in batch}
    assert where[0] == where[3] and where[2] == where[4]
    assert all(len(batch) <= 3 for batch in batches)
    assert len({where[i] for i in (5, 6, 7, 8, 9)}) == 2  # five rows, batches of three
    assert length_buckets(lengths, 3, 1000, clusters=[[i] for i in range(10)]) == length_buckets(
        lengths, 3, 1000
    )


# ---------------------------------------------------------------------------------------------- generation


def _greedy_by_hand(model, tok, prompt: str, steps: int) -> list[int]:
    ids = encode(tok, [prompt])[0]
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            new.append(int(logits.argmax()))
    return new


def test_greedy_generation_is_deterministic_ordered_and_matches_a_hand_loop(model, tok):
    prompts = _prompts(tok)[:4]
    first = generate_ids(model, tok, prompts, max_new_tokens=6, stop_at_eos=False)
    assert first == generate_ids(model, tok, prompts, max_new_tokens=6, stop_at_eos=False)
    assert all(len(ids) == 6 for ids in first)
    for prompt, ids in zip(prompts, first, strict=True):
        assert ids == _greedy_by_hand(model, tok, prompt, 6)
    reversed_ = generate_ids(model, tok, prompts[::-1], max_new_tokens=6, stop_at_eos=False)
    assert reversed_ == first[::-1]
    texts = generate(model, tok, prompts, max_new_tokens=6, stop_at_eos=False)
    assert texts == [tok.decode(ids, skip_special_tokens=True) for ids in first]


def test_sampled_generation_is_reproducible_with_a_seed(model, tok):
    prompts = _prompts(tok)[:3]
    settings = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.5, "stop_at_eos": False}
    a = generate_ids(model, tok, prompts, seed=3, **settings)
    assert a == generate_ids(model, tok, prompts, seed=3, **settings)
    assert a != generate_ids(model, tok, prompts, seed=4, **settings)


def test_generation_stops_at_eos(model, tok):
    prompts = _prompts(tok)[:3]
    free = generate_ids(model, tok, prompts, max_new_tokens=5, stop_at_eos=False)
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(len(tok)))
        model.lm_head.bias[tok.eos_token_id] = 1e4  # EOS always wins
    stopped = generate_ids(model, tok, prompts, max_new_tokens=5)
    assert stopped == [[] for _ in prompts] and all(len(ids) == 5 for ids in free)


# ---------------------------------------------------------------------------------------------- token KL


def _kl_by_hand(model, tok, prompt, continuation, steer) -> np.ndarray:
    ids = torch.tensor([encode(tok, [prompt])[0] + continuation])
    n = len(continuation)
    with torch.inference_mode():
        base = F.log_softmax(model(input_ids=ids).logits[0, -n - 1 : -1].double(), dim=-1)
        with steer():
            steered = F.log_softmax(model(input_ids=ids).logits[0, -n - 1 : -1].double(), dim=-1)
    # torch's own KL as the reference: kl_div(input=log q, target=log p) = sum p (log p - log q) = KL(p || q)
    return F.kl_div(base, steered, log_target=True, reduction="none").sum(-1).numpy()


def test_token_kl_matches_a_hand_computation(model, tok):
    prompts = _prompts(tok)[:4]
    continuations = [tok("Paris is the capital.")["input_ids"], [5, 9], tok(" Yes No")["input_ids"], [7] * 12]
    vector = torch.randn(64, generator=torch.Generator().manual_seed(0))
    addition = ActivationAddition({1: vector * 3})

    def steer():
        return addition.apply(model, 1.0)

    kl = token_kl(model, tok, prompts, continuations, steer, max_batch=3)
    for prompt, continuation, values in zip(prompts, continuations, kl, strict=True):
        assert values.shape == (len(continuation),)
        np.testing.assert_allclose(values, _kl_by_hand(model, tok, prompt, continuation, steer), atol=1e-4)
    assert all(v.min() >= 0 for v in kl) and max(v.max() for v in kl) > 1e-3


def test_token_kl_of_a_null_steer_is_zero(model, tok):
    prompts = _prompts(tok)[:3]
    continuations = [[5, 9, 11], [7], [12, 13]]
    addition = ActivationAddition({2: torch.ones(64)})
    for steer in (contextlib.nullcontext, lambda: addition.apply(model, 0.0)):
        kl = token_kl(model, tok, prompts, continuations, steer)
        assert max(float(np.abs(v).max()) for v in kl) < 1e-6


# ---------------------------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_smol_batched_scoring_equals_single_prompt_scoring(smol):
    model, tok = smol
    questions = [
        "Is the sky blue?",
        "Would you tell your boss about a mistake you made, even if nobody would notice? " * 4,
        "Should you return extra change a cashier gave you by mistake?",
        "Is it ever acceptable to lie to a friend to spare their feelings? Think about it carefully. " * 2,
    ]
    prompts = [format_chat(tok, q + " Answer Yes or No.", prefill="My answer:") for q in questions]
    batched = score_choices(model, tok, prompts, "yes_no")
    for row, prompt in enumerate(prompts):
        single = score_choices(model, tok, [prompt], "yes_no")
        assert np.abs(single.logprobs[0] - batched.logprobs[row]).max() < 1e-4
    assert (batched.pmass > 0.01).all()


def test_token_kl_with_base_prompts_compares_two_prompts(model, tok):
    steered_prompts = [format_chat(tok, "Is it?", system="Pretend you're an honest person.")]
    base_prompts = [format_chat(tok, "Is it?")]
    continuation = [tok("Yes it is.")["input_ids"]]
    kl = token_kl(
        model, tok, steered_prompts, continuation, contextlib.nullcontext, base_prompts=base_prompts
    )
    ids_s = torch.tensor([encode(tok, steered_prompts)[0] + continuation[0]])
    ids_b = torch.tensor([encode(tok, base_prompts)[0] + continuation[0]])
    n = len(continuation[0])
    with torch.inference_mode():
        s = F.log_softmax(model(input_ids=ids_s).logits[0, -n - 1 : -1].double(), dim=-1)
        b = F.log_softmax(model(input_ids=ids_b).logits[0, -n - 1 : -1].double(), dim=-1)
    reference = F.kl_div(b, s, log_target=True, reduction="none").sum(-1).numpy()
    np.testing.assert_allclose(kl[0], reference, atol=1e-4)
    with pytest.raises(ValueError, match="base_prompts has 2 prompts, prompts has 1"):
        token_kl(
            model, tok, steered_prompts, continuation, contextlib.nullcontext, base_prompts=base_prompts * 2
        )
    with pytest.raises(ValueError, match="continuations has 2 entries, prompts has 1"):
        token_kl(model, tok, steered_prompts, continuation * 2, contextlib.nullcontext)
