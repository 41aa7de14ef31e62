"""Both arms of a KL evaluation in one batch (steerlab.calibrate_arms): the same KLs as two sequential arms,
for additions restricted to any positions and for edits nonlinear in c; weight deltas stay sequential."""

from __future__ import annotations

import pytest
import torch

import steerlab as sl
import steerlab.generation as generation
from steerlab.base_kv import PromptKV
from steerlab.calibrate import CalibrationConfig, calibration_prompts, measure_kl
from steerlab.interventions.activation_variants import CosineGatedAddition, DirectionalAblation

CONFIG = CalibrationConfig(n_prompts=4, n_tokens=6)
OPENING = "Tell me, in plain words and without any fuss: "
"""A common opening long enough that token KL runs the prompts' shared head once (steerlab.prefix_kv)."""


pytestmark = pytest.mark.usefixtures("one_thread")


def _vector(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(64, generator=torch.Generator().manual_seed(seed))


def _spy(monkeypatch) -> dict[str, list[int]]:
    """Count rollouts (rows of each call) and the rows of every base-prompt cache run."""
    seen: dict[str, list[int]] = {"generate": [], "base prompts": []}
    rollout, run_prompts = generation.greedy_rollout, PromptKV._run_prompts

    def counted_rollout(model, tok, prompts, **kwargs):
        seen["generate"].append(len(prompts))
        return rollout(model, tok, prompts, **kwargs)

    def counted_prompts(self, prompts):
        seen["base prompts"].append(len(prompts))
        return run_prompts(self, prompts)

    monkeypatch.setattr(generation, "greedy_rollout", counted_rollout)
    monkeypatch.setattr(PromptKV, "_run_prompts", counted_prompts)
    return seen


INTERVENTIONS = {
    "addition-all": lambda: sl.ActivationAddition({1: _vector(0), 2: _vector(1)}),
    "addition-prompt": lambda: sl.ActivationAddition({1: _vector(0), 2: _vector(1)}, positions="prompt"),
    "addition-generated": lambda: sl.ActivationAddition({1: _vector(0)}, positions="generated"),
    "ablation": lambda: DirectionalAblation({1: _vector(2), 3: _vector(3)}),
    "cosine-gated": lambda: CosineGatedAddition({2: _vector(4, 4.0)}, tau=0.05),
}


@pytest.mark.parametrize("name", sorted(INTERVENTIONS))
def test_batched_arms_equal_sequential_arms(model, tok, name, monkeypatch):
    intervention = INTERVENTIONS[name]()
    coeff = 3.0 if name == "ablation" else 2.0  # the ablation reflects (c = 2) or amplifies (c < 0)
    users = [OPENING + user for user in calibration_prompts(4)]
    seen = _spy(monkeypatch)
    sequential = measure_kl(model, tok, intervention, coeff, CONFIG, users, batch_arms=False)
    assert seen["generate"] == [4, 4] and seen["base prompts"] == [4, 4]  # no store given: one per arm
    seen["generate"].clear()
    batched = measure_kl(model, tok, intervention, coeff, CONFIG, users)
    assert seen["generate"] == [8]  # one rollout for both arms
    assert sequential.kl_neg is not None and batched.kl_neg is not None
    assert abs(sequential.kl_pos - sequential.kl_neg) > 1e-3  # the arms differ: a mix-up would show
    for field in ("kl", "kl_pos", "kl_neg", "mean_kl"):
        assert getattr(batched, field) == pytest.approx(getattr(sequential, field), rel=1e-5, abs=1e-6), field


def test_arms_positive_runs_one_arm(model, tok, monkeypatch):
    seen = _spy(monkeypatch)
    config = CalibrationConfig(n_prompts=2, n_tokens=4, arms="positive")
    point = measure_kl(model, tok, INTERVENTIONS["addition-all"](), 2.0, config)
    assert seen["generate"] == [2] and point.kl_neg is None and point.kl > 0


def test_a_weight_delta_keeps_two_sequential_arms(model, tok, monkeypatch):
    name = "model.layers.1.mlp.down_proj.weight"
    weight = dict(model.named_parameters())[name]
    delta = sl.WeightDelta(
        {name: 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(5))}
    )
    assert not delta.per_row_coefficients
    before = weight.detach().clone()
    seen = _spy(monkeypatch)
    point = measure_kl(model, tok, delta, 1.0, CONFIG)
    assert seen["generate"] == [4, 4]
    assert point.kl_neg is not None and point.kl == max(point.kl_pos, point.kl_neg) > 0
    again = measure_kl(model, tok, delta, 1.0, CONFIG, batch_arms=False)
    assert again.kl == point.kl and torch.equal(weight.detach(), before)


def test_a_prompt_intervention_keeps_two_sequential_arms(model, tok, monkeypatch):
    persona = sl.interventions.prompt.PromptIntervention("Be honest.", "Be dishonest.")
    seen = _spy(monkeypatch)
    point = measure_kl(model, tok, persona, 1.0, CONFIG)
    assert seen["generate"] == [4, 4] and point.kl_neg is not None
