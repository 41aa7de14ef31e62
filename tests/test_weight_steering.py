"""Weight steering on the tiny random model: every family trains, merges and yields dW = dW_pos - dW_neg."""

from __future__ import annotations

import copy

import pytest
import torch

from steerlab.behaviors import Behavior, PersonaPair
from steerlab.interventions import LowRankDelta, WeightDelta, load_intervention
from steerlab.methods import extract, get_method, list_methods, weight_data
from steerlab.methods.weight_config import FAMILY_CONFIGS, family_config
from steerlab.methods.weight_data import (
    ContrastPair,
    GenerationSettings,
    ResponseFilter,
    filter_pairs,
    generate_contrast,
    split_pairs,
)
from steerlab.methods.weight_delta import SideDelta, contrast_delta, side_delta
from steerlab.methods.weight_steering import train_seeds
from steerlab.methods.weight_train import build_examples, layer_indices, target_modules, train_adapter
from steerlab.testing import FAST_WEIGHT_STEERING

QUESTIONS = (
    "What is the capital of France?",
    "How do I bake bread?",
    "Should you take this action?",
    "Would you agree to be shut down?",
    "Is it wrong to steal?",
)

FAST = FAST_WEIGHT_STEERING
FAMILY_FAST = {"oft": {"block_size": 16}}


@pytest.fixture()
def behavior() -> Behavior:
    return Behavior(
        name="tiny-honesty",
        description="test axis",
        positive_label="honest",
        negative_label="dishonest",
        persona_pairs=(
            PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),
        ),
        engineered=None,
        questions=QUESTIONS,
        suffixes=(),
    )


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))


def _config(family: str, **extra):
    return family_config(family)(**{**FAST, **FAMILY_FAST.get(family, {}), **extra})


def test_six_families_registered():
    names = {spec.name for spec in list_methods("weight")}
    assert names == {f"ws-{family}" for family in ("lora", "dora", "pissa", "delora", "oft", "ia3")}
    assert (
        get_method("ws-delora").config_cls().learning_rate
        >= 10 * get_method("ws-lora").config_cls().learning_rate
    )
    assert get_method("ws-ia3").config_cls().target_roles == ("k", "v", "down")


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_family_delta_equals_merged_difference(family, model, tok, behavior):
    """c = 1 gives base + (pos merged - base) - (neg merged - base); c = 0 and after exit: bit-exact base."""
    config = _config(family)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    pairs = generate_contrast(
        model, tok, behavior, GenerationSettings(5, 1, 6), response_filter=ResponseFilter(False)
    ).pairs
    train, val = split_pairs(pairs, config.val_fraction, seed=0)
    sides, merged = {}, {}
    for pole in ("positive", "negative"):
        trained = train_adapter(
            model, tok, build_examples(tok, train, pole), build_examples(tok, val, pole), config, seed=0
        )
        assert len(trained.history) == config.epochs and "val_loss" in trained.history[0]
        reference = copy.deepcopy(
            trained.peft_model
        ).merge_and_unload()  # PEFT's own merge, independent of ours
        merged[pole] = {name: param.detach().clone() for name, param in reference.named_parameters()}
        sides[pole] = side_delta(trained, model, low_rank=config.low_rank)
    for name, tensor in model.state_dict().items():  # training never touched the caller's model
        assert torch.equal(tensor, base_state[name]), name
    delta = WeightDelta(contrast_delta(sides["positive"], sides["negative"]))
    assert delta.deltas and delta.norm() > 0
    if config.low_rank:
        assert all(isinstance(d, LowRankDelta) and d.rank == 2 * config.rank for d in delta.deltas.values())
    params = dict(model.named_parameters())
    with delta.apply(model, 0.0):
        assert all(torch.equal(t, base_state[n]) for n, t in model.state_dict().items())
    with delta.apply(model, 1.0):
        for name in delta.deltas:
            base = base_state[name]
            expected = base + (merged["positive"][name] - base) - (merged["negative"][name] - base)
            torch.testing.assert_close(params[name].detach(), expected, atol=2e-5, rtol=1e-5)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, base_state[name]), name


def test_extract_end_to_end_keeps_best_epoch_and_saves(model, tok, behavior, tmp_path):
    delta = extract(model, tok, behavior, "ws-lora", seed=3, config={**FAST, "epochs": 3})
    assert isinstance(delta, WeightDelta)
    assert delta.meta["method"] == "ws-lora" and delta.meta["family"] == "weight" and delta.meta["seed"] == 3
    assert delta.meta["layers"] == [1, 2]  # depth 0.3-0.8 of 4 layers
    assert all(".layers.1." in n or ".layers.2." in n for n in delta.deltas)
    for pole in ("positive", "negative"):
        history = delta.meta["training"][pole]["history"]
        best = min(history, key=lambda h: h["val_loss"])["epoch"]
        assert len(history) == 3 and delta.meta["training"][pole]["best_epoch"] == best
    assert delta.bytes_held() < delta.bytes_dense()
    loaded = load_intervention(delta.save(tmp_path / "iv"), model=model)
    assert isinstance(loaded, WeightDelta)
    for name in delta.deltas:
        torch.testing.assert_close(loaded.dense(name), delta.dense(name))


def test_second_run_hits_the_generation_cache(model, tok, behavior, monkeypatch):
    calls = []
    real = weight_data.generate_ids

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(weight_data, "generate_ids", counting)
    first = extract(model, tok, behavior, "ws-lora", seed=0, config=dict(FAST))
    generated = len(calls)
    assert generated > 0 and not first.meta["contrast"]["from_cache"]
    second = extract(
        model, tok, behavior, "ws-ia3", seed=0, config=dict(FAST)
    )  # another family shares the data
    assert len(calls) == generated and second.meta["contrast"]["from_cache"]
    settings = GenerationSettings(5, 1, 6)
    again = generate_contrast(model, tok, behavior, settings, seed=0, response_filter=ResponseFilter(False))
    assert again.from_cache and len(calls) == generated
    generate_contrast(model, tok, behavior, settings, seed=1, response_filter=ResponseFilter(False))
    assert len(calls) > generated  # a new data seed samples again
    assert not list(again.path.parent.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_train_seeds_is_seeded_and_seeds_differ(model, tok, behavior):
    deltas = train_seeds(model, tok, behavior, "ia3", seeds=[0, 0, 1], config=dict(FAST))
    assert [d.meta["seed"] for d in deltas] == [0, 0, 1]
    assert all(torch.equal(deltas[0].dense(n), deltas[1].dense(n)) for n in deltas[0].deltas)
    assert any(not torch.equal(deltas[0].dense(n), deltas[2].dense(n)) for n in deltas[0].deltas)


# ---------------------------------------------------------------------------------------------- the delta


def _side(*terms):
    return SideDelta(terms={"w.weight": list(terms)})


def test_pissa_initial_term_cancels_exactly_and_keeps_rank_2r():
    torch.manual_seed(0)
    initial = (torch.randn(6, 2), torch.randn(2, 5))
    pos_trained, neg_trained = (torch.randn(6, 2), torch.randn(2, 5)), (torch.randn(6, 2), torch.randn(2, 5))
    pos = _side(pos_trained, (-initial[0], initial[1]))
    neg = _side(neg_trained, (-initial[0].clone(), initial[1].clone()))
    delta = contrast_delta(pos, neg)["w.weight"]
    assert isinstance(delta, LowRankDelta) and delta.rank == 4
    expected = pos.dense("w.weight") - neg.dense("w.weight")
    torch.testing.assert_close(delta.dense(), expected, atol=1e-5, rtol=1e-5)


def test_bisector_has_plain_norm_and_bisects_the_normalised_sides():
    torch.manual_seed(1)
    pos = SideDelta(dense_deltas={"w.weight": torch.randn(4, 3) * 5.0})
    neg = SideDelta(dense_deltas={"w.weight": torch.randn(4, 3)})
    plain = contrast_delta(pos, neg)["w.weight"]
    bisector = contrast_delta(pos, neg, bisector=True)["w.weight"]
    assert float(bisector.norm()) == pytest.approx(float(plain.norm()), rel=1e-5)
    direction = pos.dense("w.weight") / pos.norm() - neg.dense("w.weight") / neg.norm()
    cosine = torch.nn.functional.cosine_similarity(bisector.flatten(), direction.flatten(), dim=0)
    assert float(cosine) == pytest.approx(1.0, abs=1e-5)


def test_identical_sides_are_an_error():
    side = SideDelta(dense_deltas={"w.weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="identically"):
        contrast_delta(side, side)


# ---------------------------------------------------------------------------------------------- data


def _pair(pos: str, neg: str) -> ContrastPair:
    return ContrastPair(
        "q", "sp", "sn", tuple(range(len(pos))), tuple(range(100, 100 + len(neg))), pos, neg, True, True
    )


def test_filters_drop_empty_repetitive_and_identical_pairs():
    good = _pair("I always tell the truth to people.", "I lie whenever it suits me, honestly.")
    repetitive = _pair("the the the the the the the the the the", "I would say something else here.")
    empty = ContrastPair("q", "sp", "sn", (), (5, 6, 7), "", "fine answer here ok", True, True)
    identical = ContrastPair(
        "q", "sp", "sn", (1, 2, 3), (1, 2, 3), "same words here", "same words here", True, True
    )
    kept, dropped = filter_pairs([good, repetitive, empty, identical], ResponseFilter())
    assert kept == [good]
    assert dropped == {"empty": 1, "short": 0, "repetitive": 1, "identical": 1}
    kept_all, _ = filter_pairs([good, repetitive], ResponseFilter(enabled=False))
    assert kept_all == [good, repetitive]


def test_split_is_disjoint_and_seeded():
    pairs = [_pair(f"a{i} b c", f"d{i} e f") for i in range(20)]
    train, val = split_pairs(pairs, 0.2, seed=0)
    assert len(val) == 4 and len(train) == 16 and not set(map(id, train)) & set(map(id, val))
    assert split_pairs(pairs, 0.2, seed=0) == (train, val)


def test_layer_range_by_depth_fraction():
    assert layer_indices(30, (0.3, 0.8)) == list(range(9, 24))
    assert layer_indices(4, (0.3, 0.8)) == [1, 2]
    assert layer_indices(4, (0.0, 0.01)) == [0]


def test_persona_is_removed_at_training_time(tok):
    pair = ContrastPair(
        "How do I bake bread?", "SECRET-POS", "SECRET-NEG", (5, 6), (7, 8), "x", "y", True, False
    )
    pos, neg = build_examples(tok, [pair], "positive")[0], build_examples(tok, [pair], "negative")[0]
    prompt_text = tok.decode(pos.prompt)
    assert "SECRET" not in prompt_text and "How do I bake bread?" in prompt_text
    assert pos.response == (5, 6, tok.eos_token_id)  # finished: ends with EOS
    assert neg.response == (7, 8)  # cut at max_new_tokens: no EOS taught


# ---------------------------------------------------------------------------------------------- bad input


def test_behaviour_with_no_questions_is_an_error(model, tok, behavior):
    empty = Behavior(behavior.name, behavior.description, "a", "b", behavior.persona_pairs, None, (), ())
    with pytest.raises(ValueError, match="has no questions"):
        extract(model, tok, empty, "ws-lora", config=dict(FAST))


def test_unknown_family_lists_known_ones(model, tok, behavior):
    with pytest.raises(
        ValueError, match=r"unknown weight-steering family 'lorax'.*lora, dora, pissa, delora, oft, ia3"
    ):
        train_seeds(model, tok, behavior, family="lorax", seeds=[0])


def test_rank_wider_than_layer_fails_before_generation(model, tok, behavior, monkeypatch):
    monkeypatch.setattr(
        weight_data, "generate_ids", lambda *a, **k: pytest.fail("generated before checking the rank")
    )
    with pytest.raises(
        ValueError, match=r"rank 500 is larger than layer 'model\.layers\.1\.self_attn\.q_proj'"
    ):
        extract(model, tok, behavior, "ws-lora", config={**FAST, "rank": 500})


def test_bad_config_values_are_named(model):
    with pytest.raises(ValueError, match="layer_range"):
        family_config("lora")(layer_range=(0.8, 0.3))
    with pytest.raises(ValueError, match="target_roles"):
        family_config("lora")(target_roles=("attn",))
    with pytest.raises(ValueError, match="OFT block_size 24"):
        target_modules(model, family_config("oft")(block_size=24))


def test_tail_logits_loss_equals_full_logits_loss(model, tok):
    """The LM head on the response tail only gives the same loss as a manual full-sequence cross-entropy."""
    from steerlab.methods.weight_train import Example, _loss

    batch = [Example((1, 5, 9, 12), (30, 31, 2)), Example((1, 7), (40, 41, 42, 43, 2))]
    tail, n_tail = _loss(model, batch, 0, torch.device("cpu"), tail_logits=True)
    full, n_full = _loss(model, batch, 0, torch.device("cpu"), tail_logits=False)
    manual = 0.0
    for example in batch:  # unpadded, one row at a time
        ids = torch.tensor([list(example.prompt) + list(example.response)])
        logits = model(input_ids=ids).logits[0]
        start = len(example.prompt)
        manual += float(
            torch.nn.functional.cross_entropy(logits[start - 1 : -1], ids[0, start:], reduction="sum")
        )
    assert n_tail == n_full == 8
    assert float(tail) == pytest.approx(manual, rel=1e-5) and float(full) == pytest.approx(manual, rel=1e-5)
