"""Unsupervised methods: power iteration against an explicit Jacobian, MELBO's constraints, random
controls, and the vector bank's selection helper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from steerlab.behaviors import Behavior, PersonaPair
from steerlab.interventions import InterventionError, load_intervention
from steerlab.interventions.vector_bank import VectorBank, select_best_index
from steerlab.methods import extract
from steerlab.methods.unsupervised import TargetProbe, jacobian_top_singular, unsupervised_prompts


def small_behavior() -> Behavior:
    pairs = (PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),)
    questions = ("What is the capital of France?", "How do I bake bread?", "Would you agree to be shut down?")
    return Behavior("honesty-small", "test", "honest", "dishonest", pairs, None, questions, ())


def test_power_iteration_matches_explicit_jacobian(model, tok):
    prompts = unsupervised_prompts(tok, small_behavior(), 2, seed=0)
    probe = TargetProbe(model, tok, prompts, source=0, target=2, tokens=2, twice_differentiable=True)
    d = model.config.hidden_size

    def target_of(theta: torch.Tensor) -> torch.Tensor:
        return probe.run(theta).reshape(-1)

    with torch.enable_grad():
        jacobian = torch.autograd.functional.jacobian(target_of, torch.zeros(d), vectorize=True)
    _, singular, vh = torch.linalg.svd(jacobian.double(), full_matrices=False)
    vectors, values = jacobian_top_singular(
        probe, d, k=4, iterations=15, generator=torch.Generator().manual_seed(0)
    )
    cosine = abs(float(F.cosine_similarity(vectors[0].double(), vh[0], dim=0)))
    assert cosine >= 0.99, f"top power-iteration vector vs explicit Jacobian SVD: cosine {cosine:.4f}"
    assert abs(float(values[0]) - float(singular[0])) / float(singular[0]) < 0.01
    gram = vectors.double() @ vectors.double().T
    torch.testing.assert_close(gram, torch.eye(4, dtype=torch.float64), atol=1e-4, rtol=0)
    assert list(values) == sorted(values.tolist(), reverse=True)


def test_power_iter_method_builds_a_bank(model, tok):
    iv = extract(
        model, tok, small_behavior(), "power_iter", n_vectors=3, iterations=4, n_prompts=2, radius=2.0
    )
    assert isinstance(iv, VectorBank) and iv.size == 3 and iv.layers() == [1]
    assert iv.meta["source_layer"] == 1 and iv.meta["target_layer"] == 2
    norms = iv.vectors[1].norm(dim=-1)
    torch.testing.assert_close(norms, torch.full((3,), 2.0), atol=1e-4, rtol=0)


def test_melbo_vectors_on_sphere_orthogonal_and_better_than_random(model, tok):
    iv = extract(model, tok, small_behavior(), "melbo", n_vectors=2, steps=15, n_prompts=2, radius=3.0)
    bank = iv.vectors[iv.layers()[0]].double()
    torch.testing.assert_close(
        bank.norm(dim=-1), torch.full((2,), 3.0, dtype=torch.float64), atol=1e-4, rtol=0
    )
    assert abs(float(bank[0] @ bank[1])) < 1e-3
    prompts = iv.meta["prompts"]
    probe = TargetProbe(model, tok, prompts, iv.meta["source_layer"], iv.meta["target_layer"], 2)
    with torch.no_grad():
        base = probe.run(torch.zeros(bank.shape[1]))
        trained = float((probe.run(bank[0].float()) - base).norm(dim=-1).pow(2).sum())
        generator = torch.Generator().manual_seed(5)
        randoms = [
            3.0 * F.normalize(torch.randn(bank.shape[1], generator=generator), dim=0) for _ in range(5)
        ]
        best_random = max(float((probe.run(r) - base).norm(dim=-1).pow(2).sum()) for r in randoms)
    assert trained > best_random
    assert abs(trained - iv.meta["objectives"][0]) / trained < 1e-3


def test_melbo_radius_sweep_is_recorded(model, tok):
    iv = extract(model, tok, small_behavior(), "melbo", n_vectors=1, steps=3, sweep_steps=2, n_prompts=1)
    assert len(iv.meta["radius_sweep"]) == 4
    assert any(abs(float(r) - iv.meta["radius"]) / iv.meta["radius"] < 1e-3 for r in iv.meta["radius_sweep"])


def test_random_is_norm_matched_to_mean_difference(model, tok):
    iv = extract(model, tok, small_behavior(), "random", layers=[1, 2], n_vectors=4, n_pairs=4)
    mean_diff = extract(model, tok, small_behavior(), "mean_diff", layers=[1, 2], n_pairs=4)
    for layer in (1, 2):
        norms = iv.vectors[layer].norm(dim=-1)
        torch.testing.assert_close(
            norms, torch.full((4,), float(mean_diff.vectors[layer].norm())), atol=1e-5, rtol=1e-4
        )
    assert not torch.allclose(iv.vectors[1][0], iv.vectors[1][1])
    again = extract(model, tok, small_behavior(), "random", layers=[1, 2], n_vectors=4, n_pairs=4)
    assert torch.equal(again.vectors[1], iv.vectors[1])
    fixed = extract(model, tok, None, "random", layers=[1], n_vectors=2, norm=5.0)
    torch.testing.assert_close(fixed.vectors[1].norm(dim=-1), torch.full((2,), 5.0))
    with pytest.raises(ValueError, match="give norm"):
        extract(model, tok, None, "random", layers=[1])


def test_vector_bank_select_apply_and_save(model, tok, tmp_path):
    vectors = torch.randn(3, model.config.hidden_size)
    bank = VectorBank({1: vectors}, meta={"method": "test"})
    ids = tok("How do I bake bread?", return_tensors="pt").input_ids
    with torch.no_grad():
        base = model(ids).logits
        with bank.select(2).apply(model, 1.0):
            steered = model(ids).logits
        with bank.apply(model, 0.0):
            assert torch.equal(model(ids).logits, base)
    saved = bank.select(2).save(tmp_path / "bank")
    loaded = load_intervention(saved, model=model)
    assert loaded.index == 2 and torch.equal(loaded.vectors[1], vectors)
    with torch.no_grad(), loaded.apply(model, 1.0):
        torch.testing.assert_close(model(ids).logits, steered)
    with pytest.raises(InterventionError, match="index 5 is out of range"):
        bank.select(5)


def test_select_best_index_uses_the_callers_score():
    bank = VectorBank({0: torch.eye(4)})
    selection = select_best_index(bank, lambda candidate: -abs(candidate.index - 2))
    assert selection.index == 2 and selection.bank.index == 2
    assert selection.scores == {0: -2.0, 1: -1.0, 2: 0.0, 3: -1.0}
    assert selection.bank.meta["selection_scores"]["2"] == 0.0
    limited = select_best_index(bank, lambda candidate: float(candidate.index), indices=[0, 1])
    assert limited.index == 1
    nan_for_three = select_best_index(bank, lambda c: float("nan") if c.index == 3 else float(c.index))
    assert nan_for_three.index == 2
    with pytest.raises(InterventionError, match="non-finite"):
        select_best_index(bank, lambda c: float("nan"))
