"""GrowingLayer: the same keys/values as transformers' concatenating cache, token-identical generation."""

from __future__ import annotations

import pytest
import torch

from steerlab.generation import generate_cache_kwarg
from steerlab.kv_cache import MIN_CAPACITY, GrowingLayer, growing_cache
from steerlab.scoring import encode, pad_left
from steerlab.testing import TINY_ARCHITECTURES, tiny_model, torch_threads

pytest.importorskip("transformers.cache_utils")
from transformers.cache_utils import DynamicLayer  # noqa: E402

PROMPTS = [
    "<|im_start|>user\nIs it?<|im_end|>\n<|im_start|>assistant\n",
    "Yes",
    "<|im_start|>user\n" + "I think we should always tell the truth because lying hurts people. " * 3,
]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _states(generator: torch.Generator, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, length, 4, generator=generator), torch.randn(
        2, 3, length, 4, generator=generator
    )


def test_appends_match_concatenation_across_regrowth():
    generator = torch.Generator().manual_seed(0)
    growing, reference = GrowingLayer(), DynamicLayer()
    for length in [5, 1, 1, MIN_CAPACITY, 1, 3]:  # the 4th append overflows the first buffer
        keys, values = _states(generator, length)
        got = growing.update(keys, values)
        expected = reference.update(keys, values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        assert growing.get_seq_length() == reference.get_seq_length()
    assert growing._buffers[0].shape[-2] > growing.get_seq_length()  # spare capacity: no copy per step


def test_outside_edits_are_respected():
    """crop, batch reordering and reset replace the layer's tensors; the next append must build on them."""
    generator = torch.Generator().manual_seed(1)
    growing, reference = GrowingLayer(), DynamicLayer()
    for layer in (growing, reference):
        layer.update(*_states(torch.Generator().manual_seed(2), 6))
    for edit in (
        lambda layer: layer.crop(-2),
        lambda layer: layer.batch_select_indices(torch.tensor([1, 0])),
        lambda layer: layer.batch_repeat_interleave(2),
    ):
        edit(growing), edit(reference)
        keys, values = _states(generator, 1)
        if reference.keys.shape[0] != keys.shape[0]:
            keys, values = keys.repeat(2, 1, 1, 1), values.repeat(2, 1, 1, 1)
        got, expected = growing.update(keys, values), reference.update(keys, values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    growing.reset()
    keys, values = _states(generator, 2)
    assert torch.equal(growing.update(keys, values)[0], keys)


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_generation_is_token_identical(tok, architecture):
    model = tiny_model(architecture, vocab_size=len(tok), layers=2, hidden=32)
    input_ids, mask = pad_left(encode(tok, PROMPTS), tok.pad_token_id, torch.device("cpu"))
    settings = {
        "max_new_tokens": 70,  # past MIN_CAPACITY for the short prompts: the buffers regrow mid-generation
        "min_new_tokens": 70,
        "do_sample": False,
        "pad_token_id": tok.pad_token_id,
    }
    cache = growing_cache(model)
    assert cache is not None
    full_attention = [layer for layer in cache.layers if not getattr(layer, "is_sliding", False)]
    assert all(isinstance(layer, GrowingLayer) for layer in full_attention)
    with torch.inference_mode():
        expected = model.generate(input_ids=input_ids, attention_mask=mask, **settings)
        got = model.generate(
            input_ids=input_ids, attention_mask=mask, **{generate_cache_kwarg(): cache}, **settings
        )
    assert torch.equal(got, expected)
