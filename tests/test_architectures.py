"""Every supported architecture, as a tiny random model built from its config: anatomy, scoring, interventions."""

from __future__ import annotations

import pytest
import torch

from steerlab.interventions import ActivationAddition, WeightDelta
from steerlab.models import decoder_layer_prefix, decoder_layers, hidden_size, linear_modules, num_layers
from steerlab.scoring import forward_logits, pad_left, score_choices
from steerlab.testing import TINY_ARCHITECTURES, tiny_config, tiny_model, torch_threads

LAYERS, HIDDEN = 3, 32

# What each family calls its decoder stack and which projection roles it has (fused ones get their own role).
EXPECTED = {
    "llama": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "qwen2": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "qwen3": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "gemma": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "gemma2": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "gemma3_text": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "mistral": ("model.layers", {"q", "k", "v", "o", "gate", "up", "down"}),
    "phi3": ("model.layers", {"qkv", "o", "gate_up", "down"}),
    "gpt2": ("transformer.h", {"qkv", "o", "up", "down"}),
    "gpt_neox": ("gpt_neox.layers", {"qkv", "o", "up", "down"}),
}

PROMPTS = [
    "<|im_start|>user\nIs it?<|im_end|>\n<|im_start|>assistant\n",
    "Yes",
    "<|im_start|>user\n" + "I think we should always tell the truth because lying hurts people. " * 4,
]


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def test_expectations_cover_every_tiny_architecture():
    assert set(EXPECTED) == set(TINY_ARCHITECTURES)


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def arch_model(request, tok):
    return request.param, tiny_model(request.param, vocab_size=len(tok), layers=LAYERS, hidden=HIDDEN)


def _logits(model, tok, prompts=PROMPTS):
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    input_ids, mask = pad_left(ids, tok.pad_token_id, torch.device("cpu"))
    with torch.inference_mode():
        return forward_logits(model, input_ids, mask, last_only=True)


def _output_features(module: torch.nn.Module) -> int:
    """Output width of a projection (nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out])."""
    if isinstance(module, torch.nn.Linear):
        return module.out_features
    return int(module.weight.shape[1])


def test_anatomy(arch_model):
    arch, model = arch_model
    prefix, roles = EXPECTED[arch]
    assert num_layers(model) == LAYERS
    assert len(decoder_layers(model)) == LAYERS
    assert hidden_size(model) == HIDDEN
    assert decoder_layer_prefix(model) == prefix
    names = dict(model.named_parameters())
    for layer in range(LAYERS):
        found = linear_modules(model, layer)
        assert set(found) == roles
        block = decoder_layers(model)[layer]
        for path in found.values():
            assert f"{prefix}.{layer}.{path}.weight" in names
        assert _output_features(block.get_submodule(found["o"])) == HIDDEN
        assert _output_features(block.get_submodule(found["down"])) == HIDDEN


def test_scoring_runs_and_batching_is_exact(arch_model, tok):
    _, model = arch_model
    batched = score_choices(model, tok, PROMPTS, "yes_no")
    assert batched.logprobs.shape == (len(PROMPTS), 2)
    assert (batched.logprobs < 0).all()
    for row, prompt in enumerate(PROMPTS):
        single = score_choices(model, tok, [prompt], "yes_no")
        assert abs(single.logprobs[0] - batched.logprobs[row]).max() < 1e-4


def test_activation_addition(arch_model, tok):
    _, model = arch_model
    base = _logits(model, tok)
    vector = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))
    addition = ActivationAddition({1: vector * 4})
    with addition.apply(model, 0.0):
        assert torch.equal(_logits(model, tok), base)
    with addition.apply(model, 1.0):
        steered = _logits(model, tok)
    assert (steered - base).abs().max() > 1e-3
    assert torch.equal(_logits(model, tok), base)
    assert all(len(block._forward_hooks) == 0 for block in decoder_layers(model))


def test_weight_delta_on_every_projection(arch_model, tok):
    arch, model = arch_model
    prefix = EXPECTED[arch][0]
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(2)
    deltas = {}
    for layer in range(LAYERS):
        for path in linear_modules(model, layer).values():
            name = f"{prefix}.{layer}.{path}.weight"
            deltas[name] = torch.randn(model.get_parameter(name).shape, generator=generator) * 0.5
    delta = WeightDelta(deltas)
    base = _logits(model, tok)
    with delta.apply(model, 1.0):
        steered = _logits(model, tok)
    assert (steered - base).abs().max() > 1e-3
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(_logits(model, tok), base)


def test_tiny_config_keeps_special_ids_inside_a_small_vocab():
    for arch in TINY_ARCHITECTURES:
        config = tiny_config(arch, vocab_size=50)
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(config, key, None)
            assert value is None or value < 50, (arch, key, value)
    with pytest.raises(ValueError, match="no tiny config for architecture 'bert'"):
        tiny_config("bert")
