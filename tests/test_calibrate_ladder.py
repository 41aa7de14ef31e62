"""kl-ladder: one shared cache of KL evaluations serves every target, and a planted monotone
dose-response on the tiny model comes out monotone across the levels."""

from __future__ import annotations

import math

import pytest
import torch

from steerlab import calibrate_ladder as ladder_module
from steerlab.bench.ladder import summarise_levels
from steerlab.calibrate import CalibrationConfig, KLPoint, find_coefficient
from steerlab.calibrate_ladder import calibrate_ladder, ladder_coefficients, ladder_search, level_tolerance


def _quadratic(calls: list[float]):
    def kl_at(c: float) -> KLPoint:
        calls.append(c)
        kl = 0.3 * c**2
        return KLPoint(coeff=c, kl=kl, kl_pos=kl)

    return kl_at


def test_ladder_reuses_evaluations_across_targets():
    targets = [0.25, 0.5, 1.0, 2.0]
    config = CalibrationConfig(tol=0.02, power_law_guess=False)
    calls: list[float] = []
    levels = ladder_search(_quadratic(calls), targets, config)
    assert [lv.target_kl for lv in levels] == targets
    for level in levels:
        assert level.converged, level.note
        assert abs(level.point.kl - level.target_kl) <= level_tolerance(config, level.target_kl)
    assert sum(lv.fresh_evals for lv in levels) == len(calls)
    separate = 0
    for target in targets:
        alone: list[float] = []
        tol = level_tolerance(config, target)
        find_coefficient(
            _quadratic(alone), CalibrationConfig(target_kl=target, tol=tol, power_law_guess=False)
        )
        separate += len(alone)
    assert len(calls) < separate  # the ladder is cheaper than one search per level
    assert levels[1].fresh_evals <= levels[0].fresh_evals  # later levels start inside a known bracket


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.05, 0.025), (0.25, 0.05), (0.5, 0.05), (1.0, 0.05), (2.0, 0.1), (4.0, 0.2)],
)
def test_level_tolerance_by_hand(target, expected):
    """Absolute up to the reference level (half the level at most), the same share of it above."""
    assert level_tolerance(CalibrationConfig(target_kl=1.0, tol=0.05), target) == pytest.approx(expected)


def _flip_above(calls: list[float], at: float = 1.3):
    """KL = 0.8 c^2, 4% higher past c = `at`: a greedy rollout that flips a token there."""

    def kl_at(c: float) -> KLPoint:
        calls.append(c)
        kl = 0.8 * c**2 * (1.04 if c > at else 1.0)
        return KLPoint(coeff=c, kl=kl, kl_pos=kl)

    return kl_at


def test_relative_tolerance_above_the_reference_saves_evaluations(monkeypatch):
    config = CalibrationConfig(target_kl=1.0, tol=0.05)
    relative: list[float] = []
    levels = ladder_search(_flip_above(relative), [0.5, 1.0, 2.0], config)
    for level in levels:
        assert level.converged and abs(level.point.kl - level.target_kl) <= level_tolerance(
            config, level.target_kl
        )
    monkeypatch.setattr(ladder_module, "level_tolerance", lambda config, target: min(config.tol, target / 2))
    absolute: list[float] = []
    ladder_search(_flip_above(absolute), [0.5, 1.0, 2.0], config)
    assert len(relative) < len(absolute)


def test_ladder_rejects_bad_targets():
    with pytest.raises(ValueError, match="targets"):
        ladder_search(_quadratic([]), [], CalibrationConfig())
    with pytest.raises(ValueError, match="targets"):
        ladder_search(_quadratic([]), [0.5, -1.0], CalibrationConfig())


def _planted(model, tok):
    """An addition at the last block along lm_head(No) - lm_head(Yes): pushing the final residual towards
    that direction raises log P(No) - log P(Yes) monotonically (the cosine with it grows with c)."""
    from steerlab.interventions import ActivationAddition
    from steerlab.scoring import choice_token_ids

    weight = model.get_output_embeddings().weight.detach()
    no = weight[choice_token_ids(tok, "No")].mean(0)
    yes = weight[choice_token_ids(tok, "Yes")].mean(0)
    direction = (no - yes) / (no - yes).norm()
    last = model.config.num_hidden_layers - 1
    return ActivationAddition({last: direction}, meta={"method": "planted"})


def test_planted_dose_response_is_monotone_on_the_tiny_model(model, tok):
    from steerlab.evals import evaluate, summarise_eval

    torch.manual_seed(0)
    intervention = _planted(model, tok)
    config = CalibrationConfig(n_prompts=2, n_tokens=4, tol=0.01, max_evals=14)
    levels = calibrate_ladder(model, tok, intervention, [0.05, 0.2, 0.8], config)
    coeffs = [abs(lv.coeff) for lv in levels]
    assert coeffs == sorted(coeffs) and len(set(coeffs)) == 3
    assert [lv.achieved_kl for lv in levels] == sorted(lv.achieved_kl for lv in levels)
    table = evaluate(model, tok, intervention, "sycophancy-claims", ladder_coefficients(levels), split="all")
    summary = summarise_levels(table, levels, lambda t: summarise_eval(t, n_boot=100))
    delta = {row["coeff"]: row["value"] for row in summary["metrics"] if row["metric"] == "delta_y"}
    effects = [delta[c] for c in coeffs]
    assert all(b > a for a, b in zip(effects, effects[1:], strict=False)), effects
    assert effects[0] > 0, (coeffs, effects)
    reverse = [delta[-c] for c in coeffs]
    assert all(b < a + 1e-5 for a, b in zip(reverse, reverse[1:], strict=False)), reverse  # may saturate
    assert reverse[0] < 0
    mean_y0 = [row for row in summary["metrics"] if row["metric"] == "mean_y" and row["coeff"] == 0.0]
    assert len(mean_y0) == 1  # c = 0 summarised once
    assert [lv["target_kl"] for lv in summary["levels"]] == [0.05, 0.2, 0.8]
    assert all(math.isfinite(lv["achieved_kl"]) for lv in summary["levels"])


def test_a_prompt_sits_at_its_measured_kl_on_every_level(model, tok):
    from steerlab.interventions.prompt import PromptIntervention

    prompt = PromptIntervention("Be honest.", "Be dishonest.", meta={"method": "prompt"})
    levels = calibrate_ladder(model, tok, prompt, [0.1, 1.0], CalibrationConfig(n_prompts=1, n_tokens=3))
    assert [lv.policy for lv in levels] == ["measured", "measured"]
    assert levels[0].achieved_kl == levels[1].achieved_kl and levels[0].coeff == 1.0
    assert ladder_coefficients(levels) == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("power", [2.0, 3.0])
def test_later_levels_start_from_the_fitted_power_law(power):
    """On a clean KL ~ c^p the line through the first level's points lands each later level in one step."""
    calls: list[float] = []

    def kl_at(c: float) -> KLPoint:
        calls.append(c)
        return KLPoint(coeff=c, kl=0.02 * c**power, kl_pos=0.02 * c**power)

    levels = ladder_search(kl_at, [0.5, 1.0, 2.0], CalibrationConfig())
    assert all(level.converged for level in levels)
    assert [level.fresh_evals for level in levels][1:] == [1, 1]
