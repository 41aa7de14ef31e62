"""OFT's native split: our block rotation R against PEFT's merged weight, the skew/symmetric split by hand on a
2x2 rotation, the split of a real extracted OFT delta, and the refusals (no parameters, foreign parameters)."""

from __future__ import annotations

import copy

import pytest
import torch

from steerlab.analysis import bases
from steerlab.analysis.inputs import AblationInputError, load_adapters
from steerlab.analysis.native_oft import oft_rotation, oft_skew_split
from steerlab.analysis.variants import VariantOptions, build_variants
from steerlab.interventions.weight import ADAPTERS_FILE
from steerlab.methods import extract
from test_analysis_native import FAST, behavior, private_cache  # noqa: F401  (shared fixtures)

OFT_FAST = {**FAST, "block_size": 16, "learning_rate": 1e-2}
NATIVE = ("native",)
QUIET = VariantOptions(norm_controls=False)


def _rotation_2x2(q: float, exact: bool) -> torch.Tensor:
    """PEFT's Cayley map of Q = [[0, q], [-q, 0]] worked out by hand."""
    if exact:  # (I - Q)(I + Q)^-1: a rotation with cos = (1 - q^2)/(1 + q^2), sin = 2q/(1 + q^2)
        c, s = (1 - q * q) / (1 + q * q), 2 * q / (1 + q * q)
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    # Neumann, 5 terms: I + 2Q + 2Q^2 + 2Q^3 + Q^4 with Q^2 = -q^2 I
    a, b = 1 - 2 * q * q + q**4, (2 - 2 * q * q) * q
    return torch.tensor([[a, b], [-b, a]], dtype=torch.float64)


@pytest.mark.parametrize("exact", [True, False])
def test_rotation_of_one_2x2_block_is_the_hand_computed_cayley_map(exact):
    vectors = torch.tensor([[0.3], [-0.2]])  # two 2x2 blocks of a 4-wide input
    r = oft_rotation(vectors, 4, 0 if exact else 5)
    expected = torch.block_diag(_rotation_2x2(0.3, exact), _rotation_2x2(-0.2, exact))
    torch.testing.assert_close(r, expected, atol=1e-6, rtol=1e-6)
    shared = oft_rotation(torch.tensor([[0.3]]), 4, 0)  # block_share: one rotation for both blocks
    torch.testing.assert_close(shared, torch.block_diag(*[_rotation_2x2(0.3, True)] * 2), atol=1e-6, rtol=0)


def test_skew_part_is_the_sine_term_and_the_residual_the_cosine_term():
    """With W0 = I and exact 2x2 rotations by angles a, b: keep = (sin a - sin b) J.T, drop = (cos a - cos b) I."""
    w0 = torch.eye(2, dtype=torch.float64)
    r_pos, r_neg = _rotation_2x2(0.4, True), _rotation_2x2(-0.1, True)
    keep = oft_skew_split(w0, r_pos, r_neg).double()
    sin = [2 * q / (1 + q * q) for q in (0.4, -0.1)]
    cos = [(1 - q * q) / (1 + q * q) for q in (0.4, -0.1)]
    j = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(keep, (sin[0] - sin[1]) * j.T, atol=1e-6, rtol=0)
    drop = w0 @ (r_pos - r_neg).T - keep
    torch.testing.assert_close(drop, (cos[0] - cos[1]) * torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0)
    # for an orthogonal R the symmetric part of R - I is -1/2 (R - I).T (R - I): second order
    m = r_pos - torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(0.5 * (m + m.T), -0.5 * m.T @ m, atol=1e-12, rtol=0)


@pytest.mark.parametrize("neumann", [True, False])
def test_rotation_matches_peft_merged_weight(model, neumann):
    from peft import OFTConfig, get_peft_model

    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = OFTConfig(
        r=0, oft_block_size=16, target_modules=["o_proj", "down_proj"], use_cayley_neumann=neumann
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(3)
    vectors = {}
    for name, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "oft_R") and "default" in module.oft_R:
            with torch.no_grad():
                module.oft_R["default"].weight.normal_(0.0, 0.05)
            vectors[f"{name}.weight"] = module.oft_R["default"].weight.detach().clone()
    merged = dict(copy.deepcopy(peft_model).merge_and_unload().named_parameters())
    assert len(vectors) == 8
    for name, vec in vectors.items():
        w0 = base[name].double()
        r = oft_rotation(vec, w0.shape[1], 5 if neumann else 0)
        change = merged[name].double() - w0
        assert float(change.norm()) > 0.1
        torch.testing.assert_close(w0 @ r.T, merged[name].double(), atol=1e-5, rtol=0)


def _extracted(model, tok, behavior, tmp_path):  # noqa: F811
    delta = extract(model, tok, behavior, "ws-oft", seed=0, config=OFT_FAST)
    directory = delta.save(tmp_path / "oft")
    delta.update_meta(directory, calibration={"coeff": 1.0})
    return delta, directory


def test_oft_split_of_an_extracted_delta(model, tok, behavior, tmp_path):  # noqa: F811
    delta, directory = _extracted(model, tok, behavior, tmp_path)
    (adapter,) = load_adapters([directory], model)
    assert any(k.endswith("oft_neumann_terms") for k in adapter.params)
    variants = {v.name: v for v in build_variants(adapter, [adapter], model, NATIVE, QUIET)}
    keep, drop = variants["oft_rotation_skew"], variants["oft_rotation_residual"]
    assert (keep.keep, drop.keep, keep.group) == ("keep", "drop", drop.group)
    for name, full in delta.deltas.items():
        k, d = keep.delta.dense(name), drop.delta.dense(name)
        bases.check_split("test", name, full, k, d)
        assert float(d.norm()) < float(k.norm())  # the symmetric part is second order in the generators
    # parameters of another delta: the reproduction check stops the run with one line
    tampered = dict(adapter.params)
    key = next(k for k in tampered if k.startswith("positive/") and k.endswith("oft_R.default.weight"))
    tampered[key] = tampered[key] * 3.0 + 0.01
    adapter.params = tampered
    with pytest.raises(bases.ReconstructionError, match="do not reproduce dW"):
        build_variants(adapter, [adapter], model, NATIVE, QUIET)


def test_oft_native_split_refuses_without_its_parameters(model, tok, behavior, tmp_path):  # noqa: F811
    _, directory = _extracted(model, tok, behavior, tmp_path)
    (adapter,) = load_adapters([directory], model)
    adapter.params = {k: v for k, v in adapter.params.items() if "oft_R" not in k}
    with pytest.raises(AblationInputError, match=r"oft.*lacks '.*oft_R\.default\.weight'"):
        build_variants(adapter, [adapter], model, NATIVE, QUIET)
    (directory / ADAPTERS_FILE).unlink()
    (adapter,) = load_adapters([directory], model)
    with pytest.raises(AblationInputError, match=rf"{directory}: no adapters.safetensors"):
        build_variants(adapter, [adapter], model, NATIVE, QUIET)
