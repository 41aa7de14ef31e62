"""Family-native splits from real (tiny) PEFT adapters: extraction saves both poles' parameters beside dW,
and every native split reconstructs the saved dW per tensor (the split check raises otherwise)."""

from __future__ import annotations

import pytest
import torch

from steerlab.analysis import bases
from steerlab.analysis.inputs import load_adapters
from steerlab.analysis.native import native_reshapes
from steerlab.analysis.variants import VariantOptions, build_variants
from steerlab.behaviors import Behavior, PersonaPair
from steerlab.interventions import load_intervention
from steerlab.interventions.weight import ADAPTERS_FILE
from steerlab.methods import extract
from steerlab.testing import FAST_WEIGHT_STEERING

FAST = FAST_WEIGHT_STEERING | {"n_questions": 4, "max_new_tokens": 5}


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
        questions=(
            "What is the capital of France?",
            "How do I bake bread?",
            "Is it wrong to steal?",
            "Would you agree to be shut down?",
        ),
        suffixes=(),
    )


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("lora", {"positive_pole_only", "negative_pole_only", "rankcomp_top1", "rankcomp_tophalf_residual"}),
        ("pissa", {"positive_pole_only", "rankcomp_top1"}),
        ("dora", {"dora_direction_only", "dora_magnitude_only", "dora_magnitude_residual"}),
        ("ia3", {"ia3_attention_gates_only", "ia3_mlp_gates_only"}),
        ("delora", {"dir_only", "mag_only", "random_norm"}),
    ],
)
def test_native_splits_reconstruct_the_saved_delta(family, expected, model, tok, behavior, tmp_path):
    delta = extract(model, tok, behavior, f"ws-{family}", seed=0, config=FAST)
    directory = delta.save(tmp_path / family)
    assert (directory / ADAPTERS_FILE).is_file()
    delta.update_meta(directory, calibration={"coeff": 1.0})
    (adapter,) = load_adapters([directory], model)
    assert any(k.startswith("positive/") for k in adapter.params)
    assert any(k.startswith("negative/") for k in adapter.params)
    variants = build_variants(adapter, [adapter], model, ("native",), VariantOptions(norm_controls=False))
    names = {v.name for v in variants}
    assert expected <= names, names
    if (
        family == "dora"
    ):  # the saved parameters reproduce PEFT's merged dW: direction + magnitude + cross term
        direction = next(v for v in variants if v.name == "dora_direction_only").delta
        magnitude = next(v for v in variants if v.name == "dora_magnitude_only").delta
        for name, full in delta.deltas.items():
            residual = bases.dense_of(full) - direction.dense(name) - magnitude.dense(name)
            assert float(residual.norm()) <= 0.5 * float(bases.dense_of(full).norm()) + 1e-6
    if family == "delora":
        reshaped = native_reshapes(adapter, torch.Generator().manual_seed(0))
        total = sum(bases.energy(d) for d in delta.deltas.values())
        for name in ("dir_only", "mag_only", "random_norm"):
            assert sum(bases.energy(d) for d in reshaped[name].values()) == pytest.approx(total, rel=1e-4)


def test_pole_split_of_lora_is_exact_and_low_rank(model, tok, behavior, tmp_path):
    delta = extract(model, tok, behavior, "ws-lora", seed=1, config=FAST)
    directory = delta.save(tmp_path / "lora")
    resaved = load_intervention(directory).save(tmp_path / "resaved")  # a copy keeps the adapter parameters
    assert (resaved / ADAPTERS_FILE).read_bytes() == (directory / ADAPTERS_FILE).read_bytes()
    (adapter,) = load_adapters([resaved], model, coeff=1.0)
    variants = {
        v.name: v
        for v in build_variants(adapter, [adapter], model, ("native",), VariantOptions(norm_controls=False))
    }
    for name, full in delta.deltas.items():
        pos, neg = (
            variants["positive_pole_only"].delta.deltas[name],
            variants["negative_pole_only"].delta.deltas[name],
        )
        assert pos.rank == neg.rank == full.rank // 2  # type: ignore[union-attr]
        torch.testing.assert_close(pos.dense() + neg.dense(), full.dense(), atol=1e-5, rtol=1e-4)  # type: ignore[union-attr]
