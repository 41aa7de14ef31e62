"""Model placement on CPU: device-map loading, vectors following each layer's device, quantized weights
refused by weight deltas, batches fitted to free memory, and an out-of-memory error halving the batch."""

from __future__ import annotations

import pytest
import torch

from steerlab.interventions import ActivationAddition, WeightDelta
from steerlab.models import decoder_layers, load_model
from steerlab.placement import (
    QuantizedWeightError,
    fit_batch_size,
    follow_device,
    halving_on_oom,
    is_oom,
    placement_kwargs,
    refuse_quantized,
)
from steerlab.scoring import generate_ids, score_choices
from steerlab.testing import split_device_map, torch_threads

PROMPTS = ["Is the sky blue?", "Is fire cold?", "Is water wet? Answer", "2+2=4?", "Yes or no?", "Is it?"]


def _oom(message: str = "CUDA out of memory. Tried to allocate 2.00 GiB") -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(message)


def test_halving_on_oom_halves_retries_and_keeps_order():
    tried: list[int] = []

    def run(batch):
        tried.append(len(batch))
        if len(batch) > 3:
            raise _oom()
        return [x * 10 for x in batch]

    assert halving_on_oom(run, list(range(10)), 8) == [x * 10 for x in range(10)]
    assert tried[:3] == [8, 4, 2] and all(size <= 2 for size in tried[2:])


def test_halving_on_oom_reraises_other_errors_and_an_oom_at_the_smallest_batch():
    def broken(batch):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        halving_on_oom(broken, [1, 2, 3], 2)

    def always(batch):
        raise _oom()

    with pytest.raises(torch.cuda.OutOfMemoryError):
        halving_on_oom(always, [1, 2, 3], 4)
    assert is_oom(RuntimeError("MPS backend out of memory")) and not is_oom(RuntimeError("shape mismatch"))


def test_fit_batch_size_uses_free_memory_and_leaves_cpu_alone():
    cpu = torch.device("cpu")
    assert fit_batch_size(16, cpu, 1000) == 16  # no free-memory reading on CPU: unchanged
    assert fit_batch_size(16, torch.device("cuda"), 1 << 20, free=80 << 30) == 512  # capped at the ceiling
    assert fit_batch_size(16, torch.device("cuda"), 1 << 30, free=8 << 30) == 4  # half of free memory


def test_scoring_and_generation_survive_an_injected_oom(model, tok):
    with torch_threads(1):
        reference = score_choices(model, tok, PROMPTS, "yes_no", max_batch=8).logprobs
        generated = generate_ids(model, tok, PROMPTS, max_new_tokens=4, max_batch=8)
        sizes: list[int] = []

        def fail_big_batches(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            sizes.append(ids.shape[0])
            if ids.shape[0] > 2:
                raise _oom()

        handle = model.register_forward_pre_hook(fail_big_batches, with_kwargs=True)
        try:
            scores = score_choices(model, tok, PROMPTS, "yes_no", max_batch=8).logprobs
            again = generate_ids(model, tok, PROMPTS, max_new_tokens=4, max_batch=8)
        finally:
            handle.remove()
    assert max(sizes) > 2 and min(sizes) <= 2  # it ran out of memory, then ran halved batches
    torch.testing.assert_close(torch.tensor(scores), torch.tensor(reference), rtol=0, atol=1e-5)
    assert again == generated


def test_follow_device_moves_prepared_tensors_once():
    vectors = {0: torch.ones(4), 1: torch.ones(4)}
    steer = ActivationAddition(vectors)
    steer.prepare(torch.device("cpu"), torch.float32)
    follow_device(steer, 1, torch.device("meta"))
    assert steer._prepared[1].device.type == "meta" and steer._prepared[0].device.type == "cpu"
    steer._prepared[2] = (torch.ones(2), torch.zeros(2))
    follow_device(steer, 2, torch.device("meta"))
    assert all(t.device.type == "meta" for t in steer._prepared[2])
    follow_device(steer, 9, torch.device("meta"))  # a layer it does not edit: nothing happens


def test_weight_delta_refuses_quantized_weights_and_leaves_the_model_alone(model):
    name = "model.layers.1.mlp.down_proj.weight"
    original = model.get_parameter(name)
    module = model.get_submodule(name.rsplit(".", 1)[0])
    module.weight = torch.nn.Parameter(torch.zeros_like(original, dtype=torch.int8), requires_grad=False)
    delta = WeightDelta({name: torch.ones_like(original)})
    with (
        pytest.raises(QuantizedWeightError, match="without quantization.*activation or prompt"),
        delta.apply(model, 1.0),
    ):
        pass
    assert torch.equal(model.get_parameter(name), torch.zeros_like(original, dtype=torch.int8))
    refuse_quantized({"x": torch.ones(2)})  # float weights pass


def test_placement_kwargs_errors_are_clear():
    cpu = torch.device("cpu")
    assert placement_kwargs(None, None, cpu, torch.float32) == {}
    assert placement_kwargs("auto", None, cpu, torch.float32) == {"device_map": "auto"}
    with pytest.raises(ValueError, match="device_map 'everywhere'"):
        placement_kwargs("everywhere", None, cpu, torch.float32)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            placement_kwargs(None, "4bit", cpu, torch.float32)
    with pytest.raises(ValueError, match="quantization must be one of"):
        placement_kwargs(None, "3bit", cpu, torch.float32)


def test_a_device_mapped_model_steers_and_restores_like_a_plain_one(model, tok, tmp_path):
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    plain, plain_tok = load_model(str(tmp_path / "m"), device="cpu")
    n = len(decoder_layers(plain))
    device_map = split_device_map(n, "cpu", "cpu")
    mapped, mapped_tok = load_model(str(tmp_path / "m"), device="cpu", device_map=device_map)
    assert {p.device.type for p in mapped.parameters()} == {"cpu"}  # placed by the map, not moved after
    vector = torch.randn(plain.config.hidden_size, generator=torch.Generator().manual_seed(0))
    steer = ActivationAddition({1: vector, 2: -vector})
    with torch_threads(1):
        for m, t in ((plain, plain_tok), (mapped, mapped_tok)):
            with steer.apply(m, 2.0):
                m._steered = score_choices(m, t, PROMPTS, "yes_no").logprobs
        torch.testing.assert_close(
            torch.tensor(mapped._steered), torch.tensor(plain._steered), rtol=0, atol=1e-5
        )
        name = "model.layers.1.mlp.down_proj.weight"
        before = {k: v.clone() for k, v in mapped.state_dict().items()}
        delta = WeightDelta({name: torch.randn_like(mapped.get_parameter(name))})
        with delta.apply(mapped, 1.5):
            changed = score_choices(mapped, mapped_tok, PROMPTS, "yes_no").logprobs
        assert not torch.allclose(torch.tensor(changed), torch.tensor(mapped._steered))
        assert all(torch.equal(before[k], v) for k, v in mapped.state_dict().items())


def test_weight_delta_edits_offloaded_weights_and_restores_them_exactly(model, tok, tmp_path):
    """Offloaded blocks (accelerate keeps their weights off the module, on the meta device): a WeightDelta
    edits the weight the offload hook loads, scores match the plain model under the same delta, and the
    offloaded weights are exactly as before afterwards. Disk offload on CPU here; GPU + CPU offload uses
    the same hooks (tests/test_multi_device_gpu.py)."""
    from transformers import AutoModelForCausalLM

    from steerlab.placement import offloaded_weight

    model.save_pretrained(tmp_path / "m")
    n = len(decoder_layers(model))
    device_map = split_device_map(n, "cpu", "disk")
    offloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "m", device_map=device_map, offload_folder=str(tmp_path / "offload"), dtype=torch.float32
    ).eval()
    names = ["model.layers.0.mlp.down_proj.weight", f"model.layers.{n - 1}.mlp.down_proj.weight"]
    assert offloaded.get_parameter(names[1]).device.type == "meta"
    slot = offloaded_weight(offloaded, names[1])
    assert slot is not None and offloaded_weight(offloaded, names[0]) is None
    kept = slot.read().clone()
    generator = torch.Generator().manual_seed(0)
    delta = WeightDelta(
        {name: torch.randn(*model.get_parameter(name).shape, generator=generator) for name in names}
    )
    with torch_threads(1):
        base = score_choices(offloaded, tok, PROMPTS, "yes_no").logprobs
        with delta.apply(model, 0.5):
            expected = score_choices(model, tok, PROMPTS, "yes_no").logprobs
        with delta.apply(offloaded, 0.5):
            got = score_choices(offloaded, tok, PROMPTS, "yes_no").logprobs
        after = score_choices(offloaded, tok, PROMPTS, "yes_no").logprobs
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=0, atol=1e-5)
    assert not torch.allclose(torch.tensor(got), torch.tensor(base))
    assert (after == base).all() and torch.equal(slot.read(), kept)
    assert names[1] not in slot.loader.state_dict  # the disk-only weight is read from disk again
