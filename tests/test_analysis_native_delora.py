"""DeLoRA's native splits: our rank-1 components against PEFT's delora layer, each component's norm by hand, and
the poles / rank-component splits of a real extracted DeLoRA delta (reconstruction, ranks, foreign parameters)."""

from __future__ import annotations

import copy

import pytest
import torch

from steerlab.analysis import bases
from steerlab.analysis.inputs import load_adapters
from steerlab.analysis.native_delora import delora_components
from steerlab.analysis.variants import VariantOptions, build_variants
from steerlab.interventions import LowRankDelta
from steerlab.methods import extract
from test_analysis_native import FAST, behavior, private_cache  # noqa: F401  (shared fixtures)

NATIVE = ("native",)
QUIET = VariantOptions(norm_controls=False)


def test_components_rebuild_peft_delora_update(model):
    from peft import DeloraConfig, get_peft_model

    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = DeloraConfig(r=4, delora_lambda=0.5, target_modules=["o_proj", "down_proj"], init_weights=False)
    peft_model = get_peft_model(model, config)
    layers = {
        f"{name}.weight": module
        for name, module in peft_model.base_model.model.named_modules()
        if hasattr(module, "delora_A") and "default" in module.delora_A
    }
    with torch.no_grad():
        next(iter(layers.values())).delora_lambda["default"].fill_(0.8)  # a trained lambda differs from init
    merged = dict(copy.deepcopy(peft_model).merge_and_unload().named_parameters())
    assert len(layers) == 8
    for name, layer in layers.items():
        a, b = layer.delora_A["default"].detach(), layer.delora_B["default"].detach()
        lam = float(layer.delora_lambda["default"])
        w0 = base[name]
        w_norm = w0.norm(dim=0)
        parts = delora_components(a, b, lam, w_norm)
        assert len(parts) == 4 and all(p.rank == 1 for p in parts)
        total = sum((p.dense() for p in parts), start=torch.zeros_like(w0))
        torch.testing.assert_close(total, layer.get_delta_weight("default").detach(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w0 + total, merged[name], atol=1e-6, rtol=1e-5)
        # by hand: component j = (lambda / r) * unit(B[:, j]) (unit(A[j]) * w_norm), so its norm is
        # lambda / r * ||unit(A[j]) * w_norm||; sorted largest first
        expected = sorted(
            (lam / 4 * float((a[j] / a[j].norm() * w_norm).norm()) for j in range(4)), reverse=True
        )
        found = [bases.energy(p) ** 0.5 for p in parts]
        assert found == pytest.approx(expected, rel=1e-5)


def test_delora_splits_of_an_extracted_delta(model, tok, behavior, tmp_path):  # noqa: F811
    delta = extract(model, tok, behavior, "ws-delora", seed=0, config=FAST)
    directory = delta.save(tmp_path / "delora")
    delta.update_meta(directory, calibration={"coeff": 1.0})
    (adapter,) = load_adapters([directory], model)
    rank = next(v for k, v in adapter.params.items() if k.endswith("delora_A.default")).shape[0]
    variants = {v.name: v for v in build_variants(adapter, [adapter], model, NATIVE, QUIET)}
    assert {"positive_pole_only", "negative_pole_only", "rankcomp_top1_residual", "dir_only"} <= set(variants)
    for name, full in delta.deltas.items():
        for stem in ("rankcomp_top1", "rankcomp_tophalf", "positive_pole_only"):
            keep = variants[stem].delta.deltas[name]
            assert isinstance(keep, LowRankDelta)
        assert variants["rankcomp_top1"].delta.deltas[name].rank == 2  # one component per pole
        assert variants["rankcomp_tophalf"].delta.deltas[name].rank == 2 * max(1, rank // 2)
        for keep, drop in (
            ("rankcomp_top1", "rankcomp_top1_residual"),
            ("positive_pole_only", "negative_pole_only"),
        ):
            bases.check_split(
                "test", name, full, variants[keep].delta.dense(name), variants[drop].delta.dense(name)
            )
    top1 = variants["rankcomp_top1"].energy_fraction
    assert 0 < top1 < variants["rankcomp_tophalf"].energy_fraction + 1e-9
    tampered = dict(adapter.params)
    key = next(k for k in tampered if k.startswith("negative/") and k.endswith("delora_lambda.default"))
    tampered[key] = tampered[key] * 2.0
    adapter.params = tampered
    with pytest.raises(bases.ReconstructionError, match="do not reproduce dW"):
        build_variants(adapter, [adapter], model, NATIVE, QUIET)
