"""Faster weight-steering training: frozen-prefix reuse and a shared initial adapter give the plain path's result."""

from __future__ import annotations

import pytest
import torch

from steerlab.methods import weight_train
from steerlab.methods.weight_config import family_config
from steerlab.methods.weight_prefix import compute_prefix, model_inputs
from steerlab.methods.weight_train import Example, initial_adapter, train_adapter
from steerlab.models import decoder_layers, first_block
from steerlab.testing import tiny_model

CPU = torch.device("cpu")


def _examples(vocab: int, count: int, seed: int) -> list[Example]:
    """Rows of varied prompt and response lengths, so batches are left-padded."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(count):
        prompt_len, response_len = (int(x) for x in torch.randint(2, 9, (2,), generator=generator))
        ids = torch.randint(3, vocab, (prompt_len + response_len,), generator=generator).tolist()
        rows.append(Example((1, *ids[:prompt_len]), (*ids[prompt_len:], 2)))
    return rows


def _config(family: str = "lora", **extra):
    base = {"epochs": 2, "batch_size": 3, "learning_rate": 1e-2, "progress": False}
    return family_config(family)(**{**base, **extra})


def _adapter_params(trained) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone()
        for name, p in trained.peft_model.named_parameters()
        if any(key in name for key in ("lora_", "delora_", "ia3_", "oft_"))
    }


def _spy_prefix(monkeypatch) -> list[object]:
    """Record what `_frozen_prefix` returned, so a test knows the reuse path really ran."""
    seen: list[object] = []
    original = weight_train._frozen_prefix

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(weight_train, "_frozen_prefix", spy)
    return seen


@pytest.mark.parametrize(
    ("architecture", "family"),
    [("llama", "lora"), ("llama", "dora"), ("llama", "ia3"), ("gemma2", "lora"), ("gpt_neox", "lora")],
)
def test_prefix_reuse_gives_the_plain_losses_and_adapter(architecture, family, tok, monkeypatch):
    model = tiny_model(architecture, vocab_size=len(tok))
    train, val = _examples(len(tok), 7, seed=1), _examples(len(tok), 3, seed=2)
    config = _config(family)
    plain = train_adapter(model, tok, train, val, config, seed=0, reuse_prefix=False)
    seen = _spy_prefix(monkeypatch)
    reused = train_adapter(model, tok, train, val, config, seed=0)
    assert seen and seen[0] is not None, "the reuse path fell back to full forwards"
    assert seen[0].layer == 1  # blocks 1, 2 of 4 are adapted: block 0 is the frozen prefix
    for a, b in zip(plain.history, reused.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert plain.best_epoch == reused.best_epoch
    plain_params, reused_params = _adapter_params(plain), _adapter_params(reused)
    assert plain_params and plain_params.keys() == reused_params.keys()
    for name, value in plain_params.items():  # Adam amplifies round-off on near-zero gradients: compare norms
        difference = float((reused_params[name] - value).norm()) / max(float(value.norm()), 1e-12)
        assert difference < 1e-4, f"{name}: relative difference {difference:.2e}"
    start = _adapter_params(initial_adapter(model, config, 0))
    assert any(not torch.equal(start[name], value) for name, value in plain_params.items())  # it trained


def test_prefix_reuse_skips_the_frozen_blocks(model, tok):
    """Inside `reusing`, a fed forward never runs block 0 and still gives the full forward's logits."""
    rows = [e.prompt + e.response for e in _examples(len(tok), 4, seed=3)]
    prefix = compute_prefix(model, rows, 2, batch_size=3, pad=0, device=CPU)
    assert prefix is not None and set(prefix.hidden) == set(rows)
    calls = []
    handle = decoder_layers(model)[0].mlp.register_forward_hook(lambda *a: calls.append(1))
    inputs = model_inputs(rows, 0, CPU)
    with torch.no_grad():
        full = model(**inputs).logits
        assert len(calls) == 1
        with prefix.reusing(model):
            prefix.feed(rows, inputs["input_ids"].shape[1])
            reused = model(**inputs).logits
            unfed = model(**inputs).logits  # not fed: runs in full
    handle.remove()
    assert len(calls) == 2
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(reused[mask], full[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unfed, full)
    assert prefix.check(model, rows[:2], 0, CPU)


def test_a_wrong_prefix_is_caught_and_training_falls_back(model, tok, monkeypatch):
    rows = [e.prompt + e.response for e in _examples(len(tok), 3, seed=4)]
    prefix = compute_prefix(model, rows, 1, batch_size=3, pad=0, device=CPU)
    assert prefix is not None
    prefix.hidden[rows[0]] = prefix.hidden[rows[0]] + 1.0
    assert not prefix.check(model, rows[:2], 0, CPU)

    def corrupted(*args, **kwargs):
        found = compute_prefix(*args, **kwargs)
        assert found is not None
        found.hidden = {row: value + 1.0 for row, value in found.hidden.items()}
        return found

    monkeypatch.setattr(weight_train, "compute_prefix", corrupted)
    seen = _spy_prefix(monkeypatch)
    trained = train_adapter(model, tok, _examples(len(tok), 4, seed=7), [], _config("lora"), seed=0)
    assert seen == [None] and len(trained.history) == 2


def test_nothing_to_skip_when_block_zero_is_adapted(model, tok, monkeypatch):
    config = _config("lora", layer_range=(0.0, 0.5))
    targets = initial_adapter(model, config, 0).targets
    assert first_block(model, targets) == 0
    seen = _spy_prefix(monkeypatch)
    trained = train_adapter(model, tok, _examples(len(tok), 4, seed=5), [], config, seed=0)
    assert seen == [None] and len(trained.history) == 2
    assert first_block(model, ["lm_head"]) is None
    assert compute_prefix(model, [(1, 2, 3)], None, 2, 0, CPU) is None


@pytest.mark.parametrize("family", ["pissa", "lora"])
def test_a_shared_initial_adapter_gives_the_same_training(family, model, tok):
    """Both poles may copy one initial adapter: same result as initialising each, and the start is untouched."""
    train = _examples(len(tok), 5, seed=6)
    config = _config(family, epochs=1)
    own = train_adapter(model, tok, train, [], config, seed=0)
    start = initial_adapter(model, config, seed=0)
    before = {k: v.clone() for k, v in start.peft_model.state_dict().items()}
    shared = train_adapter(model, tok, train, [], config, seed=0, start=start)
    again = train_adapter(model, tok, train, [], config, seed=0, start=start)
    for name, value in start.peft_model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed in the shared start"
    own_state, shared_state = own.peft_model.state_dict(), shared.peft_model.state_dict()
    for name, value in own_state.items():
        assert torch.equal(shared_state[name], value), name
        assert torch.equal(again.peft_model.state_dict()[name], value), name
    assert own.initial_factors.keys() == shared.initial_factors.keys()
    for name, (up, down) in own.initial_factors.items():
        assert torch.equal(shared.initial_factors[name][0], up)
        assert torch.equal(shared.initial_factors[name][1], down)
    assert family_config("pissa").costly_init and not family_config("lora").costly_init


@pytest.mark.integration
def test_prefix_reuse_applies_to_smollm2_and_keeps_the_losses(smol, monkeypatch):
    """On the built-in model the check passes (no silent fallback) and the losses are the plain path's."""
    model, tok = smol
    train, val = _examples(len(tok), 6, seed=8), _examples(len(tok), 2, seed=9)
    config = _config("lora", epochs=2, rank=4, alpha=8.0)
    plain = train_adapter(model, tok, train, val, config, seed=0, reuse_prefix=False)
    seen = _spy_prefix(monkeypatch)
    reused = train_adapter(model, tok, train, val, config, seed=0)
    assert seen and seen[0] is not None and seen[0].layer == 9  # 30 blocks, layer_range (0.3, 0.8)
    for a, b in zip(plain.history, reused.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_logits_agree_to_the_round_off_of_their_dtype():
    """bf16 logits that moved by ~2% of the largest logit (30 bf16 blocks in another batch shape) agree;
    the same gap in float32, or a structural error in bf16, does not. The dtype is read before upcasting
    (it was read after, so bf16 got the float32 tolerance and reuse was always refused on GPUs)."""
    from steerlab.methods.weight_prefix import logits_agree

    full = torch.randn(64, 400, generator=torch.Generator().manual_seed(0)) * 10
    moved = full + 0.6 * torch.randn(64, 400, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    assert logits_agree(full.bfloat16(), moved.bfloat16())
    assert not logits_agree(full, moved)
    assert logits_agree(full, full + 1e-5)
    assert not logits_agree(full.bfloat16(), (full + 5.0).bfloat16())
