"""steerlab.analysis end to end on a tiny random model with planted deltas whose locus is known by design.

A small eval suite registered here scores y = log P(Yes) - log P(No) on a few prompts. The planted delta
writes u = (W_U[Yes] - W_U[No]) into the residual from layer 2's down_proj, read along v = the mean input of
that projection at the scored position, so +c raises y on every row; the other tensors get small noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.analysis.api import ablate
from steerlab.analysis.inputs import AblationInputError
from steerlab.analysis.retention import retention_rows
from steerlab.analysis.run import InvariantError, _check_invariants
from steerlab.analysis.variants import Variant, VariantOptions
from steerlab.analysis.verdicts import Thresholds, family_test, verdicts
from steerlab.chat import ChatPrompt
from steerlab.evals.common import RunContext
from steerlab.evals.registry import EVALS, register_eval
from steerlab.interventions import ActivationAddition, LowRankDelta, WeightDelta
from steerlab.metrics import RowMismatchError

EVAL = "test-ablate-yesno"
QUESTIONS = (
    "Should you take this action?",
    "Is it wrong to steal?",
    "Would you agree to be shut down?",
    "What is the capital of France?",
    "How do I bake bread?",
    "I think we should always tell the truth.",
)
LAYER = 2
DOWN = f"model.layers.{LAYER}.mlp.down_proj.weight"


@dataclass(frozen=True)
class YesNoConfig:
    n_rows: int = 6
    system: str | None = None  # a long system prompt gives the rows a shared head (steerlab.prefix_kv)


def _run_yesno(ctx: RunContext, config: YesNoConfig) -> pd.DataFrame:
    questions = QUESTIONS[: config.n_rows]
    scores = ctx.score(
        [ChatPrompt(q, system=config.system, prefill="Answer:") for q in questions],
        {"Yes": [" Yes"], "No": [" No"]},
    )
    meta = pd.DataFrame({"row_id": [f"q{i}" for i in range(len(questions))], "label": 1})
    per_coeff = {}
    for coeff, s in scores.items():
        yes, no = s.logprobs[:, 0], s.logprobs[:, 1]
        per_coeff[coeff] = {"logratio": yes - no, "pmass": np.exp(np.logaddexp(yes, no)), "y": yes - no}
    return ctx.table(meta, per_coeff)


@pytest.fixture(autouse=True, scope="module")
def _yesno_eval():
    """The test eval exists only while this module's tests run (the registry is process-wide)."""
    register_eval(EVAL, YesNoConfig, "test: log P(Yes) - log P(No)", native_pole="Yes")(_run_yesno)
    yield
    EVALS.remove(EVAL)


def _readout(model, tok) -> torch.Tensor:
    head = model.get_output_embeddings().weight.detach()
    yes, no = tok.encode(" Yes")[-1], tok.encode(" No")[-1]
    u = head[yes] - head[no]
    return u / u.norm()


def _mean_input(model, tok, name: str) -> torch.Tensor:
    from steerlab.chat import format_chat

    captured = []
    module = model.get_submodule(name.removesuffix(".weight"))
    handle = module.register_forward_hook(lambda m, args, out: captured.append(args[0][:, -1].detach()))
    try:
        with torch.no_grad():
            for q in QUESTIONS:
                text = format_chat(tok, ChatPrompt(q, prefill="Answer:"))
                model(torch.tensor([tok.encode(text)]))
    finally:
        handle.remove()
    v = torch.cat(captured).mean(0)
    return v / v.norm()


def _planted(
    model, tok, strength: float = 10.0, noise: float = 0.02, seed: int = 0, rank_one_only: bool = False
):
    """Rank-1 signal in layer 2's down_proj; small random noise on every o/down tensor of layers 0-3."""
    g = torch.Generator().manual_seed(seed)
    u, v = _readout(model, tok), _mean_input(model, tok, DOWN)
    deltas: dict[str, torch.Tensor | LowRankDelta] = {}
    for layer in range(4):
        for module in ("self_attn.o_proj", "mlp.down_proj"):
            name = f"model.layers.{layer}.{module}.weight"
            shape = dict(model.named_parameters())[name].shape
            if rank_one_only and name != DOWN:
                continue
            deltas[name] = torch.randn(shape, generator=g) * noise / shape[0] ** 0.5
    deltas[DOWN] = deltas[DOWN] + strength * torch.outer(u, v)
    meta = {
        "adapter_family": "lora",
        "seed": seed,
        "behavior": "tiny",
        "model_id": "tiny",
        "calibration": {"coeff": 1.0},
    }
    return WeightDelta(deltas, meta=meta)


def test_planted_layer_locus_is_found(model, tok):
    delta = _planted(model, tok)
    table = ablate(
        model, tok, [delta], EVAL, ["layer"], options=VariantOptions(norm_controls=False), n_boot=200
    )
    pos = table.set_index("variant")
    assert pos.loc["full", "effect"] > 0.2  # the plant steers
    assert pos.loc["full", "retention"] == pytest.approx(1.0)
    assert pos.loc[f"layer_{LAYER}_only", "retention"] >= 0.8
    assert pos.loc[f"leave_layer_{LAYER}_out", "retention"] <= 0.2
    for other in (0, 1, 3):
        assert abs(pos.loc[f"layer_{other}_only", "retention"]) <= 0.2
    assert (table["row_key_symdiff"] == 0).all() and (table["n_rows"] == len(QUESTIONS)).all()
    zero = pos.loc["zero"]
    assert zero["effect"] == 0.0 and zero["energy_fraction"] == 0.0  # zero == base exactly
    fired = [v for v in verdicts(table) if v.rule == "layer/module locus"]
    assert any(f"'layer_{LAYER}'" in v.sentence for v in fired), [v.sentence for v in verdicts(table)]


def test_planted_rank_one_direction_is_the_shared_core(model, tok):
    delta = _planted(model, tok, rank_one_only=True, noise=0.5)
    options = VariantOptions(shared_k=(8, 32), own_k=(8,), random_draws=1, norm_controls=False)
    table = ablate(model, tok, [delta], EVAL, ["cross"], options=options, n_boot=200).set_index("variant")
    assert table.loc["top8", "retention"] >= 0.8 and abs(table.loc["tail8", "retention"]) <= 0.2
    assert table.loc["keep_B_shared_K32", "retention"] >= 0.8
    assert abs(table.loc["drop_B_shared_K32", "retention"]) <= 0.2
    rules = {v.rule for v in verdicts(table.reset_index())}
    assert "shared core" in rules


def test_random_null_retains_about_k_over_d(model, tok, tmp_path):
    delta = _planted(model, tok, strength=0.5, rank_one_only=True, noise=0.0)
    options = VariantOptions(shared_k=(32,), own_k=(), random_draws=8, norm_controls=False)
    table = ablate(model, tok, [delta], EVAL, ["cross"], options=options, n_boot=50, out=tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "Random null (mean over draws vs expected ~K/d)" in report and "(expected 0.50)" in report
    nulls = table[table["basis"] == "random"]
    assert len(nulls) == 8
    expected = float(nulls["expected_retention"].iloc[0])
    assert expected == pytest.approx(32 / 64)
    assert float(nulls["retention"].mean()) == pytest.approx(expected, abs=0.15)


def test_norm_controls_and_resume_and_report(model, tok, tmp_path):
    delta = _planted(model, tok)
    out = tmp_path / "ablate"
    first = ablate(model, tok, [delta], EVAL, ["layer"], out=out, n_boot=50)
    controls = first[first["keep"] == "control"]
    assert "full~rand" in set(controls["variant"])
    assert (
        controls["energy_fraction"].round(4).tolist()
        == first.set_index("variant")
        .loc[[v.removesuffix("~rand") for v in controls["variant"]], "energy_fraction"]
        .round(4)
        .tolist()
    )
    units = sorted(p.name for p in (out / "units" / "ablate").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "units" / "ablate").iterdir()}
    second = ablate(model, tok, [delta], EVAL, ["layer"], out=out, n_boot=50)
    assert sorted(p.name for p in (out / "units" / "ablate").iterdir()) == units
    assert {p.name: p.stat().st_mtime_ns for p in (out / "units" / "ablate").iterdir()} == stamps  # reused
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    written = pd.read_parquet(out / "ablations.parquet")
    for column in (
        "model",
        "behavior",
        "adapter_family",
        "seed",
        "ablation",
        "variant",
        "basis",
        "group",
        "layers",
        "modules",
        "keep",
        "energy_fraction",
        "norm_fraction",
        "coeff",
        "eval",
        "effect",
        "retention",
        "retention_ci_low",
        "retention_ci_high",
        "si",
        "pmass",
        "n_rows",
        "row_key_symdiff",
    ):
        assert column in written.columns, column
    from steerlab.cli import main

    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## Verdicts" in report and "layer locus 'layer_2'" in report and "one adapter family" in report
    assert (out / "plots" / "ablate_layers.png").is_file()


def test_a_variant_with_a_missing_row_fails():
    base = pd.DataFrame({"row_id": ["a", "b", "c"], "coeff": 0.0, "y": [0.0, 0.1, 0.2], "pmass": 1.0})
    full = base.assign(coeff=1.0, y=base["y"] + 1.0)
    short = full.iloc[:2]
    assert retention_rows(base, {"full": full, "v": full}, n_boot=20)[1]["row_key_symdiff"] == 0
    with pytest.raises(RowMismatchError, match="variant 'v' at c=1 does not hold the same rows"):
        retention_rows(base, {"full": full, "v": short}, n_boot=20)


def test_zero_must_reproduce_base_exactly(model, tok):
    delta = _planted(model, tok)
    base = pd.DataFrame({"row_id": ["a", "b"], "coeff": 0.0, "y": [0.5, -0.5], "pmass": 1.0})
    zero = Variant("zero", "reference", "", "zero", "zero", delta.scaled(0.0))
    _check_invariants(zero, None, base.assign(coeff=1.0), base)  # type: ignore[arg-type]
    with pytest.raises(InvariantError, match="'zero' at c=1 does not reproduce"):
        _check_invariants(zero, type("A", (), {"label": "x"})(), base.assign(coeff=1.0, y=[0.5, -0.49]), base)


def test_bad_inputs_are_one_line_errors(model, tok):
    import steerlab as sl

    assert sl.ablate is ablate
    delta = _planted(model, tok)
    other = _planted(model, tok, seed=1)
    other.meta["behavior"] = "other-behaviour"
    with pytest.raises(AblationInputError, match="behavior 'other-behaviour' differs from 'tiny'"):
        ablate(model, tok, [delta, other], EVAL, ["layer"])
    other.meta.update(behavior="tiny", model_id="another-model")
    with pytest.raises(AblationInputError, match="model_id 'another-model' differs"):
        ablate(model, tok, [delta, other], EVAL, ["layer"])
    vector = ActivationAddition({1: torch.ones(64)}, meta={"calibration": {"coeff": 1.0}})
    with pytest.raises(
        AblationInputError, match="is a 'activation_addition' intervention; `ablate` needs a weight"
    ):
        ablate(model, tok, [vector], EVAL, ["layer"])
    strict = VariantOptions(shared_k=(65,), own_k=(), strict_k=True)
    with pytest.raises(
        ValueError, match=r"K=65 is larger than the residual dimension of model\.layers\.\d\.\S+ "
    ):
        ablate(model, tok, [delta], EVAL, ["cross"], options=strict)
    with pytest.raises(AblationInputError, match="no adapters.safetensors"):
        ablate(model, tok, [delta], EVAL, ["native"])
    with pytest.raises(ValueError, match="--variants: unknown"):
        ablate(model, tok, [delta], EVAL, ["layers"])
    uncalibrated = _planted(model, tok)
    uncalibrated.meta.pop("calibration")
    with pytest.raises(AblationInputError, match="no calibrated coefficient"):
        ablate(model, tok, [uncalibrated], EVAL, ["layer"])


def test_family_claim_needs_seeds_and_a_permutation_test():
    rows = []
    for family, offset in (("lora", 0.0), ("pissa", 0.5)):
        for seed in range(3):
            for k, variant in enumerate(["a", "b", "c", "d"]):
                rows.append(
                    {
                        "eval": "e",
                        "adapter": f"{family}{seed}",
                        "adapter_family": family,
                        "seed": seed,
                        "variant": variant,
                        "keep": "keep",
                        "coeff": 1.0,
                        "retention": offset + 0.1 * k + 0.01 * seed,
                    }
                )
    table = pd.DataFrame(rows)
    result = family_test(table, "lora", "pissa", "e")
    assert result["p_value"] == pytest.approx(2 / 20)  # the observed split and its mirror are the extremes
    assert "does not exceed seed noise" in result["sentence"]  # 3 vs 3 seeds cannot reach p <= 0.05
    single = family_test(table[table["seed"] == 0], "lora", "pissa", "e")
    assert "no family claim" in single["sentence"]
    assert Thresholds().high == 0.7


def test_a_recalibrated_variant_is_matched_to_full_by_arm():
    base = pd.DataFrame({"row_id": ["a", "b", "c"], "coeff": 0.0, "y": [0.0, 0.1, 0.2], "pmass": 1.0})
    full = base.assign(coeff=1.0, y=base["y"] + 1.0)
    own_c = base.assign(coeff=2.5, y=base["y"] + 0.5)  # its own |c|, half the effect
    rows = {r["variant"]: r for r in retention_rows(base, {"full": full, "v": own_c}, n_boot=20)}
    assert rows["v"]["coeff"] == 2.5 and rows["v"]["retention"] == pytest.approx(0.5)
