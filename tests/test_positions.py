"""Positions: prompt-only / generated-only activation steering during generation and teacher forcing."""

from __future__ import annotations

import pytest
import torch

from steerlab.interventions import ActivationAddition, InterventionError
from steerlab.models import decoder_layers
from steerlab.scoring import encode, forward_logits, generate_ids, pad_left, token_kl
from steerlab.testing import torch_threads

HIDDEN = 64
PROMPTS = [
    "<|im_start|>user\nIs it?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of France? Paris is the capital.<|im_end|>\n",
]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _hidden(output) -> torch.Tensor:
    """A decoder block's hidden states, whether it returns a tensor or a tuple."""
    return output if isinstance(output, torch.Tensor) else output[0]


def _vec(seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed)) * scale


def _logits(model, tok) -> torch.Tensor:
    input_ids, mask = pad_left(encode(tok, PROMPTS), tok.pad_token_id, torch.device("cpu"))
    with torch.inference_mode():
        return forward_logits(model, input_ids, mask)


def _record_edits(model, layer: int, addition: ActivationAddition, run) -> list[tuple[int, torch.Tensor]]:
    """(seq length, output change made by `addition`) at each forward pass of block `layer` during `run`."""
    block = decoder_layers(model)[layer]
    before: list[torch.Tensor] = []
    edits: list[tuple[int, torch.Tensor]] = []
    pre = block.register_forward_hook(lambda m, i, o: before.append(_hidden(o).clone()))
    with addition.apply(model, 1.0):
        post = block.register_forward_hook(
            lambda m, i, o: edits.append((_hidden(o).shape[1], _hidden(o) - before[-1]))
        )
        try:
            run()
        finally:
            post.remove()
            pre.remove()
    return edits


@pytest.mark.parametrize("where", ["all", "prompt", "generated"])
def test_positions_during_generation(model, tok, where):
    vector = _vec(7)
    addition = ActivationAddition({2: vector}, positions=where)
    edits = _record_edits(
        model, 2, addition, lambda: generate_ids(model, tok, PROMPTS[:2], max_new_tokens=4, stop_at_eos=False)
    )
    prefill, steps = edits[0], edits[1:]
    assert prefill[0] > 1 and len(steps) == 3 and all(seq == 1 for seq, _ in steps)
    prompt_steered = where in ("all", "prompt")
    generated_steered = where in ("all", "generated")
    full = vector.expand_as(prefill[1])
    torch.testing.assert_close(prefill[1], full if prompt_steered else torch.zeros_like(full))
    for _, change in steps:
        expected = vector.expand_as(change) if generated_steered else torch.zeros_like(change)
        torch.testing.assert_close(change, expected)


def test_single_token_prompt_counts_as_prompt_during_generation(model, tok):
    addition = ActivationAddition({1: _vec(8)}, positions="prompt")
    assert len(encode(tok, ["Yes"])[0]) == 1  # the prefill is a 1-token pass, like a decoding step
    run = lambda: generate_ids(model, tok, ["Yes"], max_new_tokens=3, stop_at_eos=False)  # noqa: E731
    edits = _record_edits(model, 1, addition, run)
    assert len(edits) == 3 and edits[0][0] == 1 and edits[0][1].abs().min() > 0
    assert all(change.abs().max() == 0 for _, change in edits[1:])


def test_positions_in_teacher_forced_kl(model, tok):
    continuations = [[5, 9, 11, 12], [7, 7]]
    vector = _vec(9, scale=5.0)
    kls = {}
    for where in ("all", "prompt", "generated"):
        addition = ActivationAddition({1: vector}, positions=where)
        kls[where] = token_kl(model, tok, PROMPTS[:2], continuations, lambda a=addition: a.apply(model, 1.0))
    for row in range(2):
        # the first continuation token is predicted from the last prompt position: 'generated' leaves it alone
        assert kls["generated"][row][0] < 1e-6 and kls["prompt"][row][0] > 1e-4
        assert kls["all"][row].min() > 1e-4 and kls["generated"][row][1:].min() > 1e-4


def test_plain_forward_counts_every_position_as_prompt(model, tok):
    base = _logits(model, tok)
    with ActivationAddition({1: _vec(1)}, positions="generated").apply(model, 1.0):
        assert torch.equal(_logits(model, tok), base)
    with ActivationAddition({1: _vec(1)}, positions="prompt").apply(model, 1.0):
        prompt_only = _logits(model, tok)
    with ActivationAddition({1: _vec(1)}).apply(model, 1.0):
        assert torch.equal(_logits(model, tok), prompt_only)
    with pytest.raises(InterventionError, match="positions must be one of"):
        ActivationAddition({1: _vec(1)}, positions="middle")
