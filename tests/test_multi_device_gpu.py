"""A model sharded over two devices (accelerate device map): scoring, activation addition, weight-delta exact
restore and a calibration step agree with the same model on one device. The second half of the layers goes
to a second GPU where there is one, else to the CPU (GPU + CPU offload). Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from steerlab.calibrate import CalibrationConfig, measure_kl
from steerlab.interventions import ActivationAddition, WeightDelta
from steerlab.models import decoder_layers, load_model
from steerlab.placement import offloaded_weight
from steerlab.scoring import score_choices
from steerlab.testing import split_device_map

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (a model sharded over two)"
    ),
]
SECOND: int | str = 1 if torch.cuda.device_count() >= 2 else "cpu"  # a second GPU, else CPU offload

PROMPTS = ["Is the sky blue?", "Is fire cold?", "Is water wet?", "Are cats mammals?"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from steerlab.testing import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tok), layers=4, hidden=64)
    path = tmp_path_factory.mktemp("model") / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pair(saved):
    single, tok = load_model(saved, device="cuda:0", dtype="float32")
    n = len(decoder_layers(single))
    device_map = split_device_map(n, 0, SECOND)
    sharded, sharded_tok = load_model(saved, dtype="float32", device_map=device_map)
    devices = {p.device for p in sharded.parameters()}
    second = torch.device("cuda", 1) if SECOND == 1 else torch.device("meta")  # CPU offload: weights in hooks
    assert devices == {torch.device("cuda", 0), second}
    return (single, tok), (sharded, sharded_tok)


def _scores(model, tok):
    return torch.tensor(score_choices(model, tok, PROMPTS, "yes_no").logprobs)


def test_sharded_scoring_matches_one_device(pair):
    (single, tok), (sharded, stok) = pair
    torch.testing.assert_close(_scores(sharded, stok), _scores(single, tok), rtol=1e-4, atol=1e-4)


def test_activation_addition_lands_on_each_layers_device(pair):
    (single, tok), (sharded, stok) = pair
    n = len(decoder_layers(single))
    vector = torch.randn(single.config.hidden_size, generator=torch.Generator().manual_seed(0))
    steer = ActivationAddition({0: vector, n - 1: -vector})  # one layer on each device
    with steer.apply(single, 3.0):
        expected = _scores(single, tok)
    with steer.apply(sharded, 3.0):
        got = _scores(sharded, stok)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, _scores(sharded, stok))


def _weight(model, name: str) -> torch.Tensor:
    """A parameter's weight, also where accelerate offloaded it to the CPU (the parameter is then meta)."""
    parameter = model.get_parameter(name)
    if parameter.device.type != "meta":
        return parameter.detach()
    slot = offloaded_weight(model, name)
    assert slot is not None, name
    return slot.read()


def test_weight_delta_on_both_devices_matches_one_device_and_restores_exactly(pair):
    (single, tok), (sharded, stok) = pair
    n = len(decoder_layers(sharded))
    names = ["model.layers.0.mlp.down_proj.weight", f"model.layers.{n - 1}.mlp.down_proj.weight"]
    generator = torch.Generator().manual_seed(2)
    delta = WeightDelta(
        {name: torch.randn(*_weight(single, name).shape, generator=generator) for name in names}
    )
    base = _scores(sharded, stok)
    kept = {name: _weight(sharded, name).clone() for name, _ in sharded.named_parameters()}
    with delta.apply(single, 1.5):
        expected = _scores(single, tok)
    with delta.apply(sharded, 1.5):
        got = _scores(sharded, stok)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, base)
    assert torch.equal(_scores(sharded, stok), base)
    assert all(torch.equal(_weight(sharded, name), value) for name, value in kept.items())  # every tensor


def test_a_calibration_step_matches_one_device(pair):
    (single, tok), (sharded, stok) = pair
    vector = torch.randn(single.config.hidden_size, generator=torch.Generator().manual_seed(1))
    steer = ActivationAddition({1: vector})
    config = CalibrationConfig(target_kl=0.1, n_prompts=2, n_tokens=4)
    one = measure_kl(single, tok, steer, 2.0, config)
    two = measure_kl(sharded, stok, steer, 2.0, config)
    assert two.kl == pytest.approx(one.kl, rel=1e-3, abs=1e-5) and two.kl > 0
