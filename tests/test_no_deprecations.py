"""A steered generation (and a rollout that keeps its log-probs) and a PEFT export (with its PeftModel.from_pretrained check) raise no FutureWarning or
DeprecationWarning from transformers, torch or PEFT: such a warning today is a breakage on their next major
release, so it fails here."""

from __future__ import annotations

import warnings

import torch

from steerlab.exporters.peft import export_peft
from steerlab.generation import greedy_rollout
from steerlab.interventions import ActivationAddition, LowRankDelta, WeightDelta
from steerlab.scoring import generate_ids

LIBRARIES = ("transformers", "torch", "peft")


def _strict() -> warnings.catch_warnings:
    guard = warnings.catch_warnings()
    guard.__enter__()
    warnings.simplefilter("ignore")
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        for library in LIBRARIES:
            warnings.filterwarnings("error", category=category, module=rf"{library}(\..*)?$")
    return guard


def test_steered_generation_and_peft_export_emit_no_deprecation(model, tok, tmp_path):
    torch.manual_seed(0)
    steer = ActivationAddition({1: torch.randn(64)})
    params = dict(model.named_parameters())
    name = "model.layers.1.self_attn.q_proj.weight"
    out_features, in_features = params[name].shape
    delta = WeightDelta(
        {name: LowRankDelta(torch.randn(out_features, 2) * 0.05, torch.randn(2, in_features))}
    )
    guard = _strict()
    try:
        with steer.apply(model, 2.0):
            ids = generate_ids(model, tok, ["Tell me about the sea."], max_new_tokens=6)
            rollout, logprobs = greedy_rollout(model, tok, ["Tell me about the sea."], max_new_tokens=4)
        report = export_peft(delta, model, tmp_path / "adapter", coeff=1.0)
    finally:
        guard.__exit__(None, None, None)
    assert len(rollout[0]) == 4 and logprobs[0].shape[0] == 4
    assert len(ids[0]) > 0 and report.max_abs_logit_diff is not None and report.max_abs_logit_diff < 1e-3
