"""iso-KL calibration: the search on synthetic KL curves, the KL measurement against a hand-rolled
reference on the tiny model, recording into intervention.json, prompt interventions, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import steerlab as sl
from steerlab.calibrate import (
    Calibration,
    CalibrationConfig,
    CalibrationError,
    CoefficientPolicy,
    KLPoint,
    calibrate,
    calibration_prompts,
    find_coefficient,
    measure_kl,
    recorded_calibration,
)
from steerlab.chat import format_chat
from steerlab.scoring import encode

FAST = {"n_prompts": 2, "n_tokens": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def counted(kl_fn):
    calls = []

    def kl_at(c: float) -> KLPoint:
        calls.append(c)
        kl = kl_fn(c)
        return KLPoint(coeff=c, kl=kl, kl_pos=kl)

    return kl_at, calls


# ------------------------------------------------------------------------------------------ the search


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 0.37, 1.0, 40.0, 5e4])
def test_search_finds_quadratic_kl_target_within_budget(scale):
    kl_at, calls = counted(lambda c: scale * c**2)
    config = CalibrationConfig()
    point, trace, converged, note = find_coefficient(kl_at, config)
    assert converged, note
    assert abs(point.kl - 1.0) <= 0.05
    assert len(calls) == len(trace) <= 12
    assert math.isclose(point.coeff, 1 / math.sqrt(scale), rel_tol=0.03)


@pytest.mark.parametrize("power_law_guess", [True, False])
def test_search_handles_steep_non_power_law_curves(power_law_guess):
    kl_at, calls = counted(lambda c: math.expm1(c**3 / 30.0))  # KL rises much faster than c^2
    config = CalibrationConfig(power_law_guess=power_law_guess, start=0.5)
    point, trace, converged, note = find_coefficient(kl_at, config)
    assert converged, note
    assert abs(point.kl - 1.0) <= 0.05 and len(calls) <= 12


@pytest.mark.parametrize("slope", [2.5, 3.0, 4.0])
@pytest.mark.parametrize("scale", [0.01, 0.15, 5.0])
def test_a_power_law_jump_that_overshoots_brackets_the_target_at_once(slope, scale):
    """KL ~ c^s with s > 2 (the shape real steers show): the c^2 jump from the first point overshoots, so
    those two points bracket the target and regula falsi finishes; no doubling walk in between."""
    kl_at, calls = counted(lambda c: scale * c**slope)
    point, trace, converged, note = find_coefficient(kl_at, CalibrationConfig())
    assert converged, note
    root = scale ** (-1 / slope)
    jump = math.sqrt(1 / scale)
    assert calls[:2] == pytest.approx([1.0, jump])
    assert all(min(1.0, jump) < c < max(1.0, jump) for c in calls[2:])  # inside that first bracket
    assert len(calls) <= 4 and math.isclose(point.coeff, root, rel_tol=0.03)


def test_a_jump_that_falls_short_close_to_the_target_is_not_followed_by_a_doubling():
    """A flat stretch (KL ~ c^0.86 near c = 1, as a real mean_diff rollout showed): the c^2 jump lands short
    but close, and the next step is the c^2 jump again, not a doubling that overshoots to ~1.7 nats."""
    kl_at, calls = counted(lambda c: 0.883 * c**0.86)
    point, _, converged, note = find_coefficient(kl_at, CalibrationConfig())
    assert converged, note
    assert len(calls) == 3 and max(calls) < 1.2


def test_search_without_power_law_guess_brackets_by_doubling():
    kl_at, calls = counted(lambda c: 0.01 * c**2)  # root at c = 10
    _, _, converged, _ = find_coefficient(kl_at, CalibrationConfig(power_law_guess=False))
    assert converged
    assert calls[:5] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])  # doubling until the sign changes at 16
    assert all(8.0 < c < 16.0 for c in calls[5:])  # then stays inside the bracket


def test_search_reports_saturating_kl_as_not_converged():
    kl_at, calls = counted(lambda c: 0.3 * (1 - math.exp(-c)))  # never reaches 1 nat
    point, trace, converged, note = find_coefficient(kl_at, CalibrationConfig())
    assert not converged and "no bracket" in note
    assert len(calls) == 12 and point.kl == max(p.kl for p in trace)


def test_search_on_a_discontinuous_curve_stops_at_the_budget_with_the_closest_point():
    kl_at, calls = counted(lambda c: 0.02 if c < 3.0 else 5.0)  # jumps over the target: no exact root
    point, trace, converged, note = find_coefficient(kl_at, CalibrationConfig())
    assert not converged and len(calls) == 12
    assert point.kl == 0.02  # the closest evaluated point, preferring the one below the target
    brackets = sorted(c for c in calls if c > 1.0)
    assert any(2.9 < c < 3.0 for c in brackets)  # bisection fallback closed in on the jump


def test_search_stops_at_a_jump_once_the_bracket_is_narrow():
    kl_at, calls = counted(lambda c: 0.5 if c < 3.0 else 1.6)
    point, trace, converged, note = find_coefficient(kl_at, CalibrationConfig(max_evals=40))
    assert not converged and len(calls) < 40
    assert "KL jumps from 0.5 to 1.6" in note
    low, high = sorted(c for c in calls if 2.99 < c < 3.01)[:1], [c for c in calls if 3.0 <= c < 3.01]
    assert low and high  # evaluated on both sides within 0.3% of the jump
    assert point.kl == 0.5  # 0.5 below the target beats 0.6 above it


def test_search_zero_effect_intervention_does_not_crash():
    kl_at, _ = counted(lambda c: 0.0)
    point, _, converged, note = find_coefficient(kl_at, CalibrationConfig(max_evals=5))
    assert not converged and point.kl == 0.0 and "below" in note


@pytest.mark.parametrize(
    "bad",
    [
        {"target_kl": 0},
        {"quantile": 1.5},
        {"tol": 2.0},
        {"max_evals": 1},
        {"arms": "negative"},
        {"growth": 1.0},
        {"min_bracket": 0.0},
    ],
)
def test_bad_config_names_the_field(bad):
    with pytest.raises(CalibrationError, match=next(iter(bad))):
        CalibrationConfig(**bad)


def test_coefficient_policies():
    cal = Calibration("iso-kl", 2.5, 1.0, 1.0, True, 3, [], {}, "x")
    assert CoefficientPolicy().coefficients(cal) == [-2.5, 0.0, 2.5]
    assert CoefficientPolicy("fixed", [1, 0, -2]).coefficients(None) == [-2.0, 0.0, 1.0]
    with pytest.raises(CalibrationError, match="include 0"):
        CoefficientPolicy("fixed", [1, 2])
    with pytest.raises(CalibrationError, match="one of"):
        CoefficientPolicy("sweep")
    with pytest.raises(CalibrationError, match="needs a calibration"):
        CoefficientPolicy().coefficients(None)


def test_calibration_prompts_are_disjoint_from_offtask_eval():
    prompts = calibration_prompts()
    assert len(prompts) >= 8
    evals = json.loads((sl.paths.PACKAGE_DATA / "offtask_eval.json").read_text())
    questions = json.loads((sl.paths.PACKAGE_DATA / "questions.json").read_text())
    assert not set(prompts) & set(map(str, evals)) and not set(prompts) & set(map(str, questions))


# ------------------------------------------------------------------------------------------ KL measurement


def _reference_kl(model, tok, vector, layer, coeff, users, n_tokens, quantile):
    """Independent reference: one prompt at a time, a manual greedy loop and F.kl_div, no batching."""

    def steered_forward(ids):
        handle = sl.models.decoder_layers(model)[layer].register_forward_hook(
            lambda _m, _i, out: (
                (out[0] + coeff * vector, *out[1:]) if isinstance(out, tuple) else out + coeff * vector
            )
        )
        try:
            return model(input_ids=ids).logits
        finally:
            handle.remove()

    values = []
    with torch.no_grad():
        for user in users:
            ids = torch.tensor([encode(tok, [format_chat(tok, user)])[0]])
            for _ in range(n_tokens):
                next_id = steered_forward(ids)[0, -1].argmax()
                ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
            steered = F.log_softmax(steered_forward(ids)[0, -n_tokens - 1 : -1], -1)
            base = F.log_softmax(model(input_ids=ids).logits[0, -n_tokens - 1 : -1], -1)
            values.append(F.kl_div(base, steered, log_target=True, reduction="none").sum(-1).numpy())
    return float(np.quantile(np.concatenate(values), quantile))


def test_measure_kl_matches_an_unbatched_reference(model, tok):
    torch.manual_seed(1)
    vector = torch.randn(64)
    addition = sl.ActivationAddition({1: vector})
    users = calibration_prompts(3)
    config = CalibrationConfig(arms="positive", n_tokens=6)
    point = measure_kl(model, tok, addition, 2.0, config, users)
    reference = _reference_kl(model, tok, vector, 1, 2.0, users, 6, 0.95)
    assert point.kl == pytest.approx(reference, rel=1e-3, abs=1e-6)
    assert point.kl_neg is None and point.kl > 0


def test_measure_kl_is_zero_at_zero_and_both_arms_take_the_worse(model, tok):
    addition = sl.ActivationAddition({2: torch.randn(64, generator=torch.Generator().manual_seed(0))})
    # zero to float round-off: the steered side comes from the cached rollout, the base side from a cache too
    assert measure_kl(model, tok, addition, 0.0, CalibrationConfig(**FAST)).kl == pytest.approx(0.0, abs=1e-6)
    both = measure_kl(model, tok, addition, 3.0, CalibrationConfig(**FAST))
    assert both.kl == max(both.kl_pos, both.kl_neg) and both.kl_neg > 0


def test_calibrate_records_into_intervention_json(model, tok, tmp_path):
    addition = sl.ActivationAddition({1: torch.randn(64, generator=torch.Generator().manual_seed(3))})
    addition.meta["method"] = "test"
    addition.save(tmp_path / "iv")
    config = CalibrationConfig(target_kl=0.01, tol=0.001, **FAST)
    seen = []
    result = calibrate(model, tok, addition, config, directory=tmp_path / "iv", progress=seen.append)
    assert result.converged, result.note
    assert abs(result.achieved_kl - 0.01) <= 0.001 and result.n_evals == len(seen) <= 12
    again = measure_kl(model, tok, addition, result.coeff, config)
    assert again.kl == pytest.approx(result.achieved_kl, rel=1e-6)  # deterministic greedy rollout
    loaded = sl.load_intervention(tmp_path / "iv")
    stored = recorded_calibration(loaded)
    assert stored is not None and stored.coeff == result.coeff and stored.achieved_kl == result.achieved_kl
    assert [p.coeff for p in stored.trace] == [p.coeff for p in seen]
    assert loaded.meta["method"] == "test"


def test_prompt_intervention_kl_is_measured_against_the_plain_prompt(model, tok):
    prompt = sl.PromptIntervention("Pretend you're an honest person.", "Pretend you're a dishonest person.")
    result = calibrate(model, tok, prompt, CalibrationConfig(**FAST))
    assert result.policy == "measured" and result.coeff == 1.0 and result.n_evals == 1
    assert result.achieved_kl > 0  # prompt.apply is a no-op: a nonzero KL means the plain prompt was the base
    assert CoefficientPolicy().coefficients(result) == [-1.0, 0.0, 1.0]


def test_cli_calibrate_prints_and_records(model, tok, tmp_path, capsys):
    from steerlab.cli import main

    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    sl.ActivationAddition({1: torch.randn(64, generator=torch.Generator().manual_seed(3))}).save(
        tmp_path / "iv"
    )
    argv = ["calibrate", "-m", str(tmp_path / "model"), "-i", str(tmp_path / "iv"), "--target-kl", "0.01"]
    assert main([*argv, "--prompts", "3", "--tokens", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("c = ") and "KL = " in out
    meta = json.loads((tmp_path / "iv" / "intervention.json").read_text())["meta"]
    assert f"c = {meta['calibration']['coeff']:.6g}" in out


@pytest.mark.integration
def test_iso_kl_on_smollm2_reaches_one_nat(smol):
    model, tok = smol
    direction = torch.randn(sl.models.hidden_size(model), generator=torch.Generator().manual_seed(0))
    addition = sl.ActivationAddition({15: direction / direction.norm()})
    config = CalibrationConfig(arms="positive", n_prompts=4)
    result = calibrate(model, tok, addition, config)
    assert result.converged, result.note
    assert abs(result.achieved_kl - 1.0) <= 0.05 and result.n_evals <= 12
    below = measure_kl(model, tok, addition, result.coeff / 2, config)
    assert below.kl < 1.0 - 0.05  # the found |c| is where the curve crosses the target, not a plateau
