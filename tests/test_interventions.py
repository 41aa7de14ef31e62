"""Interventions: exact c = 0, exact restore, positions, composition, save/load and its checks."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from steerlab.interventions import (
    ActivationAddition,
    InterventionError,
    LowRankDelta,
    PromptIntervention,
    WeightDelta,
    applied,
    load_intervention,
)
from steerlab.interventions.base import JSON_FILE, SCHEMA_VERSION, TENSORS_FILE
from steerlab.models import decoder_layers
from steerlab.scoring import encode, forward_logits, pad_left
from steerlab.testing import tiny_model, torch_threads

HIDDEN = 64
PROMPTS = [
    "<|im_start|>user\nIs it?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is the capital of France? Paris is the capital.<|im_end|>\n",
    "Yes",
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


def _weight_delta(model, low_rank: bool = False, seed: int = 0) -> WeightDelta:
    generator = torch.Generator().manual_seed(seed)
    deltas = {}
    for name in ("model.layers.1.mlp.down_proj.weight", "model.layers.2.self_attn.q_proj.weight"):
        out_features, in_features = model.get_parameter(name).shape
        if low_rank:
            up = torch.randn(out_features, 3, generator=generator)
            deltas[name] = LowRankDelta(up, torch.randn(3, in_features, generator=generator))
        else:
            deltas[name] = torch.randn(out_features, in_features, generator=generator)
    return WeightDelta(deltas, meta={"method": "test"})


def _every_kind(model) -> list:
    return [
        ActivationAddition({1: _vec(0), 3: _vec(1)}),
        ActivationAddition({2: _vec(2)}, positions="prompt"),
        ActivationAddition({2: _vec(3)}, positions="generated"),
        _weight_delta(model),
        _weight_delta(model, low_rank=True),
        PromptIntervention("Pretend you're an honest person.", "Pretend you're a dishonest person."),
    ]


# ---------------------------------------------------------------------------------------------- c = 0, restore


def test_zero_coefficient_is_exactly_the_base_model(model, tok):
    base = _logits(model, tok)
    for intervention in _every_kind(model):
        with intervention.apply(model, 0.0):
            assert torch.equal(_logits(model, tok), base), intervention
            assert intervention.rewrite(0.0, "sys", "user") == ("sys", "user")
        with intervention.apply(model, 2.0):
            pass
        assert torch.equal(_logits(model, tok), base), intervention


def test_weight_delta_restores_every_tensor_bit_for_bit(model, tok):
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    storage = {name: p.data_ptr() for name, p in model.named_parameters()}
    base = _logits(model, tok)
    for delta in (_weight_delta(model), _weight_delta(model, low_rank=True)):
        with delta.apply(model, 1.5):
            assert not torch.equal(_logits(model, tok), base)
            name = "model.layers.1.mlp.down_proj.weight"
            expected = before[name] + 1.5 * delta.dense(name)
            torch.testing.assert_close(model.get_parameter(name).data, expected, rtol=0, atol=1e-5)
        with pytest.raises(RuntimeError, match="boom"), delta.apply(model, -3.0):
            raise RuntimeError("boom")
        after = model.state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before)
        assert {name: p.data_ptr() for name, p in model.named_parameters()} == storage
    assert torch.equal(_logits(model, tok), base)


def test_low_rank_equals_dense(model, tok):
    low = _weight_delta(model, low_rank=True)
    dense = WeightDelta({name: low.dense(name) for name in low.deltas})
    with low.apply(model, 0.7):
        a = _logits(model, tok)
    with dense.apply(model, 0.7):
        b = _logits(model, tok)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert low.bytes_held() < dense.bytes_held() == low.bytes_dense()
    assert abs(low.norm() - dense.norm()) < 1e-3 * dense.norm()
    assert abs(low.scaled(2.0).norm() - 2 * low.norm()) < 1e-3 * low.norm()


def test_hooks_are_removed_on_exit_and_on_exception(model, tok):
    addition = ActivationAddition({0: _vec(0), 2: _vec(1)})
    base = _logits(model, tok)
    blocks = decoder_layers(model)
    with addition.apply(model, 1.0):
        assert len(blocks[0]._forward_hooks) == 1 and len(blocks[2]._forward_hooks) == 1
        assert not torch.equal(_logits(model, tok), base)
    assert all(len(block._forward_hooks) == 0 for block in blocks)
    with pytest.raises(ValueError, match="inside"), addition.apply(model, 1.0):
        raise ValueError("inside")
    assert all(len(block._forward_hooks) == 0 for block in blocks)
    assert torch.equal(_logits(model, tok), base)


def test_activation_addition_adds_the_scaled_vector_at_block_outputs(model, tok):
    vector = _vec(5)
    captured = {}
    handle = decoder_layers(model)[1].register_forward_hook(
        lambda m, i, o: captured.setdefault("base", _hidden(o))
    )
    _logits(model, tok)
    handle.remove()
    with ActivationAddition({1: vector}).apply(model, -2.0):
        # a hook registered after the intervention's sees its edited output
        block = decoder_layers(model)[1]
        handle = block.register_forward_hook(lambda m, i, o: captured.setdefault("steered", _hidden(o)))
        _logits(model, tok)
        handle.remove()
    torch.testing.assert_close(
        captured["steered"] - captured["base"], (-2.0 * vector).expand_as(captured["base"])
    )


# ---------------------------------------------------------------------------------------------- composition


def test_composition_sums(model, tok):
    a, b = ActivationAddition({1: _vec(1), 2: _vec(2)}), ActivationAddition({2: _vec(3)})
    summed = a + b
    torch.testing.assert_close(summed.vectors[2], _vec(2) + _vec(3))
    with summed.apply(model, 1.0):
        one = _logits(model, tok)
    with applied(model, (a, 1.0), (b, 1.0)):
        both = _logits(model, tok)
    torch.testing.assert_close(one, both, rtol=1e-5, atol=1e-5)
    with pytest.raises(InterventionError, match="different positions"):
        a + ActivationAddition({1: _vec(1)}, positions="prompt")


def test_stacked_weight_deltas_add_and_restore(model, tok):
    before = {name: t.clone() for name, t in model.state_dict().items()}
    d1, d2 = _weight_delta(model, seed=1), _weight_delta(model, seed=2)
    name = "model.layers.1.mlp.down_proj.weight"
    with applied(model, (d1, 0.5), (d2, -1.0)):
        expected = before[name] + 0.5 * d1.dense(name) - d2.dense(name)
        torch.testing.assert_close(model.get_parameter(name).data, expected, rtol=0, atol=1e-5)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())


def test_prompt_intervention_poles():
    prompt = PromptIntervention("Be honest.", "Be dishonest.")
    assert prompt.rewrite(2.0, None, "Q?") == ("Be honest.", "Q?")
    assert prompt.rewrite(-0.1, "Keep it short.", "Q?") == ("Be dishonest.\n\nKeep it short.", "Q?")
    assert prompt.rewrite(0.0, "Keep it short.", "Q?") == ("Keep it short.", "Q?")
    prefix = PromptIntervention("Be honest.", "Be dishonest.", mode="user_prefix")
    assert prefix.rewrite(1.0, "S", "Q?") == ("S", "Be honest.\n\nQ?")
    with pytest.raises(InterventionError, match="mode must be one of"):
        PromptIntervention("a", "b", mode="assistant")
    with pytest.raises(InterventionError, match="non-empty"):
        PromptIntervention(" ", "b")


# ---------------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip_for_every_kind(model, tok, tmp_path, monkeypatch):
    def no_pickle(*_args, **_kwargs):
        raise AssertionError("pickle must not be used")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    for index, intervention in enumerate(_every_kind(model)):
        intervention.meta["seed"] = index
        directory = intervention.save(tmp_path / f"iv{index}")
        assert sorted(p.name for p in directory.iterdir()) == sorted([JSON_FILE, TENSORS_FILE])
        document = json.loads((directory / JSON_FILE).read_text())
        assert document["schema_version"] == SCHEMA_VERSION and document["kind"] == intervention.kind
        loaded = load_intervention(directory, model=model)
        assert type(loaded) is type(intervention) and loaded.meta["seed"] == index
        assert loaded.params() == intervention.params()
        original, restored = intervention.tensors(), loaded.tensors()
        assert original.keys() == restored.keys()
        assert all(torch.equal(original[k], restored[k]) for k in original)
        with intervention.apply(model, 1.3):
            expected = _logits(model, tok)
        with loaded.apply(model, 1.3):
            assert torch.equal(_logits(model, tok), expected)


def test_save_overwrites_atomically_and_update_meta(tmp_path):
    addition = ActivationAddition({1: _vec(1)}, meta={"method": "x"})
    target = addition.save(tmp_path / "iv")
    ActivationAddition({2: _vec(2)}).save(target)
    assert list(load_intervention(target).vectors) == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iv"]
    addition.update_meta(target, calibrated_coeff=1.25)
    assert load_intervention(target).meta["calibrated_coeff"] == 1.25


@pytest.fixture()
def other_model(tok):
    return tiny_model("llama", vocab_size=len(tok), layers=2, hidden=32)


def test_load_checks_the_target_model(model, other_model, tmp_path):
    addition = ActivationAddition({3: _vec(1)}).save(tmp_path / "add")
    with pytest.raises(InterventionError, match="layer 3 is out of range for a model with 2 layers"):
        load_intervention(addition, model=other_model)
    small = ActivationAddition({1: _vec(1)}).save(tmp_path / "small")
    with pytest.raises(InterventionError, match="vector has size 64, the model's hidden size is 32"):
        load_intervention(small, model=other_model)
    delta = _weight_delta(model).save(tmp_path / "delta")
    other_delta = WeightDelta({"model.layers.1.mlp.down_proj.weight": torch.zeros(32, 64)}).save(
        tmp_path / "d2"
    )
    with pytest.raises(InterventionError, match=r"delta has shape \(32, 64\), the model has \(64, 128\)"):
        load_intervention(other_delta, model=model)
    with pytest.raises(InterventionError, match="no parameter"):
        load_intervention(delta, model=other_model)
    with pytest.raises(InterventionError, match="no parameter"), _weight_delta(model).apply(other_model, 1.0):
        pass


def test_non_finite_values_are_refused_at_construction(model):
    bad = _vec(1)
    bad[3] = float("nan")
    with pytest.raises(InterventionError, match="'layer.1' has 1 non-finite"):
        ActivationAddition({1: bad})
    with pytest.raises(InterventionError, match="non-finite"):
        WeightDelta({"model.layers.1.mlp.down_proj.weight": torch.full((64, 128), float("inf"))})
    up = torch.ones(64, 2)
    up[0, 0] = float("-inf")
    with pytest.raises(InterventionError, match="::up"):
        WeightDelta({"model.layers.1.mlp.down_proj.weight": LowRankDelta(up, torch.ones(2, 128))})
    with pytest.raises(InterventionError, match=r"up \[out, r\] and down \[r, in\]"):
        LowRankDelta(torch.ones(64, 2), torch.ones(3, 128))


def test_non_finite_values_are_refused_at_load(tmp_path):
    directory = ActivationAddition({1: _vec(1)}).save(tmp_path / "iv")
    tensors = load_file(str(directory / TENSORS_FILE))
    tensors["layer.1"][0] = float("inf")
    save_file(tensors, str(directory / TENSORS_FILE))
    with pytest.raises(InterventionError, match="non-finite"):
        load_intervention(directory)


def test_malformed_directories_get_clear_errors(tmp_path):
    with pytest.raises(InterventionError, match="not an intervention directory"):
        load_intervention(tmp_path)
    directory = ActivationAddition({1: _vec(1)}).save(tmp_path / "iv")
    document = json.loads((directory / JSON_FILE).read_text())
    (directory / JSON_FILE).write_text(json.dumps({**document, "schema_version": 99}))
    with pytest.raises(InterventionError, match="schema_version 99"):
        load_intervention(directory)
    (directory / JSON_FILE).write_text(json.dumps({**document, "kind": "mystery"}))
    with pytest.raises(InterventionError, match="unknown intervention kind 'mystery'"):
        load_intervention(directory)
    (directory / JSON_FILE).write_text("{")
    with pytest.raises(InterventionError, match="invalid JSON"):
        load_intervention(directory)


# ---------------------------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_smol_weight_delta_on_every_linear_layer_restores_exactly(smol):
    model, _ = smol
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    deltas = {}
    for name, parameter in model.named_parameters():
        if name.startswith("model.layers.") and name.endswith("proj.weight"):
            out_features, in_features = parameter.shape
            up = torch.randn(out_features, 2, generator=generator) * 1e-2
            deltas[name] = LowRankDelta(up, torch.randn(2, in_features, generator=generator))
    assert len(deltas) == 30 * 7
    delta = WeightDelta(deltas)
    with pytest.raises(KeyboardInterrupt), delta.apply(model, 2.0):
        assert not torch.equal(model.get_parameter(next(iter(deltas))), before[next(iter(deltas))])
        raise KeyboardInterrupt
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_load_checks_the_recorded_model_shape(other_model, tmp_path):
    made_for = {"model_id": "org/big", "n_layers": 4, "hidden_size": 64}
    directory = ActivationAddition({1: torch.ones(32)}, meta={"model": made_for}).save(tmp_path / "iv")
    with pytest.raises(
        InterventionError, match="made for org/big with n_layers=4, but the target model has n_layers=2"
    ):
        load_intervention(directory, model=other_model)
    assert load_intervention(directory).meta["model"] == made_for  # without a model: nothing to check


def test_unreadable_tensor_file_is_named(tmp_path):
    directory = ActivationAddition({1: _vec(1)}).save(tmp_path / "iv")
    (directory / TENSORS_FILE).write_bytes(b"\x80\x04K\x01.")  # a pickle, not safetensors
    with pytest.raises(InterventionError, match="not a readable safetensors file"):
        load_intervention(directory)
    delta = WeightDelta({"w": LowRankDelta(torch.ones(4, 1), torch.ones(1, 4))}).save(tmp_path / "d")
    tensors = load_file(str(delta / TENSORS_FILE))
    del tensors["w::down"]
    save_file(tensors, str(delta / TENSORS_FILE))
    with pytest.raises(InterventionError, match="do not describe a valid weight_delta"):
        load_intervention(delta)


def test_non_finite_coefficients_are_refused(model):
    for intervention in (ActivationAddition({1: _vec(1)}), _weight_delta(model)):
        for coeff in (float("nan"), float("inf")):
            with (
                pytest.raises(InterventionError, match="coefficient must be finite"),
                intervention.apply(model, coeff),
            ):
                pass
