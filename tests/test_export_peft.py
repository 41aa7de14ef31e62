"""PEFT export: the adapter directory loads with PeftModel.from_pretrained and reproduces in-place steering."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from steerlab.cli import main as cli_main
from steerlab.exporters import peft as peft_export
from steerlab.exporters.peft import export_peft
from steerlab.interventions import ActivationAddition, InterventionError, LowRankDelta, WeightDelta

MODULES = ("model.layers.1.self_attn.q_proj", "model.layers.2.mlp.down_proj")


def _low_rank_delta(model, rank: int = 4, scale: float = 0.05) -> WeightDelta:
    torch.manual_seed(0)
    params = dict(model.named_parameters())
    deltas = {}
    for module in MODULES:
        out_features, in_features = params[f"{module}.weight"].shape
        deltas[f"{module}.weight"] = LowRankDelta(
            torch.randn(out_features, rank) * scale, torch.randn(rank, in_features)
        )
    return WeightDelta(deltas, meta={"method": "ws-lora", "model_id": "tiny"})


def _dense_delta(model, scale: float = 0.02) -> WeightDelta:
    torch.manual_seed(1)
    params = dict(model.named_parameters())
    return WeightDelta({f"{m}.weight": torch.randn_like(params[f"{m}.weight"]) * scale for m in MODULES})


def _peft_logits(model, directory, ids):
    import copy

    served = PeftModel.from_pretrained(copy.deepcopy(model), str(directory)).eval()
    with torch.no_grad():
        return served(input_ids=ids).logits


def _steered_logits(model, delta, coeff, ids):
    with torch.no_grad(), delta.apply(model, coeff):
        return model(input_ids=ids).logits


@pytest.mark.parametrize("coeff", [1.0, -2.0])
def test_low_rank_export_round_trips_exactly(model, tmp_path, coeff):
    delta = _low_rank_delta(model)
    report = export_peft(delta, model, tmp_path / "adapter", coeff=coeff)
    assert report.exact and report.rank == 4 and report.retained_energy == 1.0
    assert report.max_abs_logit_diff is not None and report.max_abs_logit_diff <= 1e-3
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == config["lora_alpha"] == 4
    assert sorted(config["target_modules"]) == sorted(MODULES)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ids = torch.randint(0, 300, (3, 11), generator=torch.Generator().manual_seed(7))  # inputs of our own
    diff = (
        (_peft_logits(model, tmp_path / "adapter", ids) - _steered_logits(model, delta, coeff, ids))
        .abs()
        .max()
    )
    assert float(diff) <= 1e-3
    assert float((_steered_logits(model, delta, coeff, ids) - model(input_ids=ids).logits).abs().max()) > 1e-2


def test_full_rank_delta_is_truncated_with_energy_and_error_reported(model, tmp_path):
    delta = _dense_delta(model)
    report = export_peft(delta, model, tmp_path / "adapter", rank=8)
    assert not report.exact and report.rank == 8
    expected_kept, expected_total = 0.0, 0.0
    for name in delta.deltas:
        singular = torch.linalg.svdvals(delta.dense(name).double())
        expected_kept += float(singular[:8].pow(2).sum())
        expected_total += float(singular.pow(2).sum())
    assert report.retained_energy == pytest.approx(expected_kept / expected_total, rel=1e-6)
    assert 0.0 < report.retained_energy < 1.0
    assert report.max_abs_logit_diff is not None and report.max_abs_logit_diff > 0.0
    assert any("retained energy" in line for line in report.lines())


def test_full_rank_at_full_width_is_exact(model, tmp_path):
    report = export_peft(_dense_delta(model), model, tmp_path / "adapter", rank=64)
    assert report.exact and report.max_abs_logit_diff <= 1e-3


def test_low_rank_factors_wider_than_rank_are_truncated(model, tmp_path):
    report = export_peft(_low_rank_delta(model, rank=6), None, tmp_path / "adapter", rank=2)
    assert not report.exact and report.rank == 2 and 0.0 < report.retained_energy < 1.0
    assert report.max_abs_logit_diff is None


def test_export_needs_a_weight_delta(model, tmp_path):
    addition = ActivationAddition({1: torch.ones(64)})
    with pytest.raises(InterventionError, match="needs a weight delta"):
        export_peft(addition, model, tmp_path / "adapter")


def test_rank_wider_than_a_module_is_an_error(model, tmp_path):
    with pytest.raises(ValueError, match="--rank 100 is larger than module"):
        export_peft(_dense_delta(model), model, tmp_path / "adapter", rank=100)
    assert not (tmp_path / "adapter").exists()


def test_interrupted_export_leaves_nothing_behind(model, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(peft_export, "logit_difference", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_peft(_low_rank_delta(model), model, tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_peft(model, tok, tmp_path, capsys):
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    intervention_dir = _low_rank_delta(model).save(tmp_path / "iv")
    code = cli_main(
        [
            "export",
            "-i",
            str(intervention_dir),
            "--format",
            "peft",
            "-o",
            str(tmp_path / "out"),
            "-m",
            str(base_dir),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(tmp_path / "out")
    assert "max abs logit difference" in captured.err and "exact" in captured.err
    assert (tmp_path / "out" / "adapter_config.json").is_file()


def test_trained_pissa_delta_exports_exactly(model, tok, tmp_path, monkeypatch):
    from steerlab.behaviors import Behavior, PersonaPair
    from steerlab.methods import extract

    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    behavior = Behavior(
        "tiny",
        "test",
        "honest",
        "dishonest",
        (PersonaPair("Be honest.", "Be dishonest."),),
        None,
        ("What is the capital of France?", "How do I bake bread?", "Is it wrong to steal?"),
        (),
    )
    options = {
        "n_questions": 3,
        "max_new_tokens": 6,
        "filter_responses": False,
        "epochs": 1,
        "learning_rate": 1e-2,
    }
    delta = extract(
        model, tok, behavior, "ws-pissa", config={**options, "val_fraction": 0.0, "progress": False}
    )
    report = export_peft(delta, model, tmp_path / "adapter")
    assert report.exact and report.rank == 16  # 2 x the PiSSA rank: the shared initial part cancelled
    assert report.max_abs_logit_diff <= 1e-3
