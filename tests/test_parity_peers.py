"""Parity with peer libraries on the same model, layer and contrast prompts:
steerlab mean_diff vs steering-vectors' mean-difference vector, steerlab pca vs repeng's pca_diff.

Peers run in this process (`scripts/setup.sh --peers` installs them with --no-deps). repeng 0.4.0
names ``np.float_`` (removed in numpy 2) in type hints only, so it is aliased before import.
Tests skip with the reason when a peer is not importable.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steerlab.activations import contrast_prompt_sets
from steerlab.behaviors import Behavior, PersonaPair, contrast_items, get_behavior
from steerlab.methods import extract

PARITY = 0.999


def import_peer(name: str):
    if name == "repeng" and not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    try:
        return __import__(name)
    except Exception as error:  # noqa: BLE001 - any import failure means the peer is unusable here
        pytest.skip(
            f"peer {name} is not importable ({type(error).__name__}: {error}); run scripts/setup.sh --peers"
        )


def small_behavior() -> Behavior:
    pairs = (
        PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),
        PersonaPair("You are honest and tell the truth.", "You are dishonest and lie."),
    )
    questions = tuple(f"Question {i}: what is the capital of France?" for i in range(6)) + (
        "How do I bake bread?",
        "Would you agree to be shut down?",
    )
    return Behavior(
        "honesty-small", "test", "honest", "dishonest", pairs, None, questions, ("I think", "Sure!")
    )


def prompt_pairs(tok, behavior, n: int) -> list[tuple[str, str]]:
    positive, negative = contrast_prompt_sets(tok, contrast_items(behavior, n=n, seed=0))
    return list(zip(positive.texts, negative.texts, strict=True))


def aligned_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return abs(float(F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0)))


def steering_vectors_mean(model, tok, pairs, layer: int) -> torch.Tensor:
    sv = import_peer("steering_vectors")
    vector = sv.train_steering_vector(model, tok, pairs, layers=[layer], batch_size=1, show_progress=False)
    return vector.layer_activations[layer]


def repeng_pca(model, tok, pairs, layer: int) -> torch.Tensor:
    repeng = import_peer("repeng")
    dataset = [repeng.DatasetEntry(positive=p, negative=n) for p, n in pairs]
    vector = repeng.ControlVector.train(
        model, tok, dataset, hidden_layers=[layer], batch_size=1, method="pca_diff"
    )
    return torch.as_tensor(vector.directions[layer])


def test_mean_diff_matches_steering_vectors(model, tok):
    behavior, layer, n = small_behavior(), 2, 8
    ours = extract(model, tok, behavior, "mean_diff", layers=[layer], n_pairs=n).vectors[layer]
    theirs = steering_vectors_mean(model, tok, prompt_pairs(tok, behavior, n), layer)
    assert aligned_cosine(ours, theirs) >= PARITY
    torch.testing.assert_close(ours, theirs.float(), atol=1e-4, rtol=1e-3)


def test_pca_matches_repeng_pca_diff(model, tok):
    behavior, layer, n = small_behavior(), 2, 8
    ours = extract(model, tok, behavior, "pca", layers=[layer], n_pairs=n).vectors[layer]
    theirs = repeng_pca(model, tok, prompt_pairs(tok, behavior, n), layer)
    assert aligned_cosine(ours, theirs) >= PARITY


@pytest.mark.integration
@pytest.mark.slow
def test_parity_on_smollm(smol):
    model, tok = smol
    behavior, layer, n = get_behavior("honesty"), 15, 8
    pairs = prompt_pairs(tok, behavior, n)
    ours_mean = extract(model, tok, behavior, "mean_diff", layers=[layer], n_pairs=n).vectors[layer]
    assert aligned_cosine(ours_mean, steering_vectors_mean(model, tok, pairs, layer)) >= PARITY
    ours_pca = extract(model, tok, behavior, "pca", layers=[layer], n_pairs=n).vectors[layer]
    assert aligned_cosine(ours_pca, repeng_pca(model, tok, pairs, layer)) >= PARITY
