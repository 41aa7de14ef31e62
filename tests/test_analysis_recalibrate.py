"""`ablate(..., recalibrate=True)` end to end on a tiny model: every keep/drop variant is scored at its own |c|,
found by iso-KL calibration to the full delta's achieved KL; the table records that per-variant |c|, and an
independent KL measurement at it lands within the calibration tolerance of the target."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from steerlab.analysis.api import ablate
from steerlab.analysis.inputs import adapter_from
from steerlab.analysis.variants import VariantOptions, build_variants
from steerlab.calibrate import CalibrationConfig, calibrate, measure_kl
from steerlab.interventions import WeightDelta
from test_analysis_run import DOWN, EVAL, _planted, _yesno_eval  # noqa: F401  (the test eval's fixture)

# a tiny random model's next-token distributions are nearly flat: its KL saturates near 0.03 nats
CALIBRATION = CalibrationConfig(
    target_kl=0.01, tol=0.001, n_tokens=6, n_prompts=2, arms="positive", max_evals=16
)
OTHER = "model.layers.1.mlp.down_proj.weight"


def _calibrated(model, tok) -> WeightDelta:
    """The planted layer-2 signal plus a random layer-1 down_proj change, calibrated to 0.01 nats."""
    planted = _planted(model, tok, strength=1.0, rank_one_only=True)
    other = torch.randn(
        dict(model.named_parameters())[OTHER].shape, generator=torch.Generator().manual_seed(1)
    )
    delta = WeightDelta({DOWN: planted.deltas[DOWN], OTHER: other / 8.0}, meta=dict(planted.meta))
    found = calibrate(model, tok, delta, CALIBRATION)
    assert found.converged, found.note
    delta.meta["calibration"] = found.as_meta()
    return delta


def test_recalibrated_variants_reach_the_full_deltas_kl(model, tok, tmp_path):
    delta = _calibrated(model, tok)
    full_c = abs(delta.meta["calibration"]["coeff"])
    target = delta.meta["calibration"]["achieved_kl"]
    options = VariantOptions(norm_controls=False)
    table = ablate(
        model, tok, [delta], EVAL, ["layer"], options=options, recalibrate=True, n_boot=50, out=tmp_path
    )
    rows = table.set_index("variant")
    assert rows.loc["full", "coeff"] == pytest.approx(full_c) and rows.loc["zero", "coeff"] == pytest.approx(
        full_c
    )
    split = rows[rows["keep"].isin(["keep", "drop"])]
    assert {"layer_2_only", "leave_layer_2_out"} <= set(split.index)
    assert "re-calibrated per variant" in (tmp_path / "ablate.json").read_text()
    config = dataclasses.replace(CALIBRATION, target_kl=target)
    (adapter,) = [adapter_from(delta, "planted")]
    variants = {v.name: v for v in build_variants(adapter, [adapter], model, ["layer"], options)}
    moved = 0
    for name, coeff in split["coeff"].items():
        kl = measure_kl(model, tok, variants[name].delta, float(coeff), config).kl
        assert abs(kl - target) <= CALIBRATION.tol, (name, coeff, kl, target)
        if abs(coeff / full_c - 1) > 0.05:  # its own |c|: at the full delta's |c| it is off target
            moved += 1
            assert (
                abs(measure_kl(model, tok, variants[name].delta, full_c, config).kl - target)
                > CALIBRATION.tol
            )
    assert moved >= 2, split["coeff"]  # layer 2 alone (and the thirds that are layer 2) need their own |c|


def test_bench_ablate_table_takes_recalibrate():
    from steerlab.bench.config import ConfigError, parse_config
    from test_analysis_bench import TINY

    assert parse_config(TINY + "[ablate]\nrecalibrate = true\n", "t.toml").ablate.recalibrate is True
    assert parse_config(TINY + "[ablate]\n", "t.toml").ablate.recalibrate is False
    with pytest.raises(ConfigError, match="recalibrate"):
        parse_config(TINY + '[ablate]\nrecalibrate = "yes"\n', "t.toml")
