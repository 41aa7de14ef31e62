"""Contrastive activation methods against independent references on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steerlab.activations import contrast_prompt_sets
from steerlab.behaviors import Behavior, PersonaPair, contrast_items
from steerlab.interventions import ActivationAddition, load_intervention
from steerlab.interventions.activation_variants import (
    ClusterAddition,
    CosineGatedAddition,
    DirectionalAblation,
    ModuleAddition,
)
from steerlab.methods import UnknownMethodError, extract
from steerlab.methods.activation_gated import spherical_kmeans
from steerlab.models import decoder_layers

N_PAIRS = 8


def small_behavior() -> Behavior:
    pairs = (
        PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),
        PersonaPair("You are honest and tell the truth.", "You are dishonest and lie."),
    )
    questions = tuple(f"Question {i}: what is the capital of France?" for i in range(8)) + (
        "How do I bake bread?",
        "Would you agree to be shut down?",
    )
    return Behavior(
        "honesty-small", "test", "honest", "dishonest", pairs, None, questions, ("I think", "Sure!", "Yes")
    )


def reference_pairs(model, tok, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block outputs at the last token, each prompt run alone through output_hidden_states."""
    items = contrast_items(small_behavior(), n=N_PAIRS, seed=0)
    positive, negative = contrast_prompt_sets(tok, items)
    rows = []
    for text in positive.texts + negative.texts:
        ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            rows.append(model(ids, output_hidden_states=True).hidden_states[layer + 1][0, -1])
    stacked = torch.stack(rows).double()
    return stacked[:N_PAIRS], stacked[N_PAIRS:]


def fit(model, tok, method: str, **options):
    return extract(model, tok, small_behavior(), method, n_pairs=N_PAIRS, **options)


def output(model, ids, iv=None, coeff=1.0):
    with torch.no_grad():
        if iv is None:
            return model(ids).logits
        with iv.apply(model, coeff):
            return model(ids).logits


def test_mean_diff_and_centred_match_reference(model, tok):
    iv = fit(model, tok, "mean_diff", layers=[1, 2])
    assert isinstance(iv, ActivationAddition) and iv.layers() == [1, 2]
    for layer in (1, 2):
        positive, negative = reference_pairs(model, tok, layer)
        expected = (positive - negative).mean(0).float()
        torch.testing.assert_close(iv.vectors[layer], expected, atol=1e-4, rtol=1e-4)
    centred = fit(model, tok, "mean_centred", layers=[1])
    torch.testing.assert_close(centred.vectors[1], iv.vectors[1] / 2, atol=1e-5, rtol=1e-4)
    meta = iv.meta
    assert meta["layers"] == [1, 2] and meta["token_position"] == "last" and meta["n_pairs"] == N_PAIRS
    assert len(meta["data_hash"]) == 12 and meta["behavior"] == "honesty-small"


def test_pca_matches_svd_reference_with_sign_vote(model, tok):
    iv = fit(model, tok, "pca", layers=[2])
    positive, negative = reference_pairs(model, tok, 2)
    diffs = (positive - negative).numpy()
    _, _, vt = np.linalg.svd(diffs - diffs.mean(0), full_matrices=False)
    votes = int(np.sign(diffs @ vt[0]).sum())
    reference = vt[0] if votes > 0 or (votes == 0 and (diffs @ vt[0]).mean() > 0) else -vt[0]
    vector = iv.vectors[2].double().numpy()
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert float(vector @ reference) > 0.9999
    assert iv.meta["mean_projection"]["2"] > 0


def test_repe_all_layers_covers_every_layer_but_the_first(model, tok):
    iv = fit(model, tok, "repe_all_layers")
    assert iv.layers() == [1, 2, 3]
    assert all(abs(float(v.norm()) - 1) < 1e-5 for v in iv.vectors.values())


def test_spherical_kmeans_recovers_planted_directions():
    generator = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 32, generator=generator), dim=-1) * 5
    truth = torch.arange(40) % 4
    points = centres[truth] + 0.3 * torch.randn(40, 32, generator=generator)
    labels = spherical_kmeans(points, 4, seed=1)
    for cluster in range(4):
        assert len(set(truth[labels == cluster].tolist())) == 1  # every cluster is pure
    assert len(set(labels.tolist())) == 4


def test_topk_clusters_fit_and_nearest_centroid_per_token(model, tok):
    iv = fit(model, tok, "topk_clusters", layers=[2], k=3)
    assert isinstance(iv, ClusterAddition) and iv.centroids[2].shape == (3, 64)
    mean = fit(model, tok, "mean_diff", layers=[2]).vectors[2]
    assert all(float(row @ mean) >= 0 for row in iv.centroids[2])
    assert sum(iv.meta["cluster_sizes"]["2"]) == N_PAIRS
    centroids = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    probe = ClusterAddition({0: centroids})
    probe.prepare(torch.device("cpu"), torch.float32)
    hidden = torch.tensor([[[3.0, 0.1], [0.2, -5.0], [0.1, 4.0]]])
    edited = probe.edit(0, hidden, 2.0)
    expected = hidden + 2.0 * torch.stack([centroids[0], centroids[0], centroids[1]])
    torch.testing.assert_close(edited, expected)


def test_cosine_gate_formula(model, tok):
    vector = torch.tensor([2.0, 0.0])
    gated = CosineGatedAddition({0: vector}, tau=0.5)
    gated.prepare(torch.device("cpu"), torch.float32)
    hidden = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]]])
    cosines = torch.tensor([1.0, 2**-0.5, 0.0, -1.0])
    gate = (cosines.abs() - 0.5).clamp(min=0)
    expected = hidden + 3.0 * gate[None, :, None] * vector
    torch.testing.assert_close(gated.edit(0, hidden, 3.0), expected)
    iv = fit(model, tok, "cosine_gated", layers=[2])
    assert 0 < iv.tau[2] < 1 and iv.meta["tau"]["2"] == iv.tau[2]
    with pytest.raises(ValueError, match="tau must be in"):
        fit(model, tok, "cosine_gated", tau=1.5)


def test_directional_ablation_removes_the_component(model, tok):
    iv = fit(model, tok, "directional_ablation", direction_layer=1, ablate_layers=[2])
    assert isinstance(iv, DirectionalAblation) and iv.layers() == [2]
    unit = iv.directions[2]
    positive, negative = reference_pairs(model, tok, 1)
    torch.testing.assert_close(
        unit.double(), F.normalize((positive - negative).mean(0), dim=0), atol=1e-4, rtol=1e-4
    )
    ids = tok("How do I bake bread?", return_tensors="pt").input_ids
    block = decoder_layers(model)[2]

    def block_output(coeff: float) -> torch.Tensor:
        seen = {}
        with torch.no_grad(), iv.apply(model, coeff):
            # registered after the intervention's hook, so it sees the edited output
            hook = block.register_forward_hook(
                lambda _m, _i, out: seen.update(h=out[0] if isinstance(out, tuple) else out)
            )
            try:
                model(ids)
            finally:
                hook.remove()
        return seen["h"]

    ablated, doubled, base = block_output(1.0), block_output(-1.0), block_output(0.0)
    assert float((ablated @ unit).abs().max()) < 1e-4
    torch.testing.assert_close(doubled @ unit, 2 * (base @ unit), atol=1e-4, rtol=1e-4)


def test_sspace_full_rank_is_the_module_mean_difference(model, tok):
    full = fit(model, tok, "sspace", layers=[1], rank_fraction=1.0)
    low = fit(model, tok, "sspace", layers=[1], rank_fraction=0.25)
    assert isinstance(full, ModuleAddition)
    name = "model.layers.1.mlp.down_proj"
    assert set(full.vectors) == {name, "model.layers.1.self_attn.o_proj"}
    weight = decoder_layers(model)[1].mlp.down_proj.weight.double()
    u = torch.linalg.svd(weight, full_matrices=False).U
    # full basis: U U^T is the identity on the output space, so the vector is the plain mean difference
    projected_low = u[:, :16] @ (u[:, :16].T @ full.vectors[name].double())
    torch.testing.assert_close(low.vectors[name].double(), projected_low, atol=1e-5, rtol=1e-4)
    assert low.meta["ranks"][name] == 16


@pytest.mark.parametrize(
    "method",
    ["mean_diff", "mean_centred", "pca", "topk_clusters", "cosine_gated", "directional_ablation", "sspace"],
)
def test_each_method_steers_saves_and_is_exact_at_zero(model, tok, tmp_path, method):
    iv = fit(model, tok, method, layers=[1, 2], **({"k": 2} if method == "topk_clusters" else {}))
    ids = tok("Would you agree to be shut down?", return_tensors="pt").input_ids
    base = output(model, ids)
    assert torch.equal(output(model, ids, iv, 0.0), base)
    steered = output(model, ids, iv, 4.0 if method != "directional_ablation" else 1.0)
    assert not torch.allclose(steered, base)
    loaded = load_intervention(iv.save(tmp_path / method), model=model)
    assert type(loaded) is type(iv) and loaded.meta["method"] == method
    torch.testing.assert_close(output(model, ids, loaded, 4.0), output(model, ids, iv, 4.0))
    torch.testing.assert_close(output(model, ids), base)  # hooks removed


def test_unknown_method_lists_registered(model, tok):
    with pytest.raises(UnknownMethodError, match="registered methods: .*mean_diff.*pca"):
        extract(model, tok, small_behavior(), "mean_dif")


def test_method_errors_name_the_problem(model, tok):
    with pytest.raises(ValueError, match="layer 9 is out of range for a model with 4 layers"):
        fit(model, tok, "mean_diff", layers=[9])
    with pytest.raises(ValueError, match="needs a behaviour"):
        extract(model, tok, None, "pca")
    same = Behavior(
        "same", "d", "a", "b", (PersonaPair("You are a person.", "You are a person."),), None, ("q?",), ()
    )
    with pytest.raises(ValueError, match="degenerate contrast at layer 2"):
        extract(model, tok, same, "mean_diff", layers=[2], n_pairs=3)


@pytest.mark.integration
def test_cli_extract_mean_diff_on_smollm(tmp_path):
    from steerlab.cli import main

    out = tmp_path / "iv"
    code = main(
        [
            "extract",
            "-m",
            "smollm2-135m",
            "-b",
            "honesty",
            "--method",
            "mean_diff",
            "--set",
            "n_pairs=4",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    iv = load_intervention(out)
    assert iv.meta["layers"] == list(range(6, 25)) and iv.meta["n_pairs"] == 4
    assert all(float(v.norm()) > 0 for v in iv.vectors.values())
