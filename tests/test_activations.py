"""Batched activation capture: layer selection, positions, padding invariance and bad-input errors."""

from __future__ import annotations

import pytest
import torch

from steerlab.activations import (
    ActivationError,
    PromptSet,
    capture_contrast,
    capture_layers,
    chat_prompts,
    contrast_prompt_sets,
    select_layers,
)
from steerlab.behaviors import Behavior, ContrastItem, PersonaPair, contrast_items
from steerlab.models import decoder_layers


def small_behavior() -> Behavior:
    pairs = (PersonaPair("Pretend you're an honest person.", "Pretend you're a dishonest person."),)
    questions = ("What is the capital of France?", "How do I bake bread?", "Would you agree to be shut down?")
    return Behavior(
        "honesty-small", "test", "honest", "dishonest", pairs, None, questions, ("I think", "Sure!")
    )


def reference_hidden(model, tok, text: str, layer: int) -> torch.Tensor:
    """Block `layer` output for one prompt run alone (no padding), via output_hidden_states
    (valid below the last block, whose hidden state HF reports after the final norm)."""
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    return out.hidden_states[layer + 1][0]


def test_select_layers_by_depth_fraction_skips_edges():
    assert select_layers(30) == list(range(6, 25))
    for n in (5, 8, 12, 30, 40):
        chosen = select_layers(n, layer_range=(0.0, 1.0))
        assert min(chosen) >= 2 and max(chosen) <= n - 3
    assert select_layers(4) == [2]  # too shallow for the rule: the middle block


def test_select_layers_explicit_and_errors():
    assert select_layers(10, [-1, 3, 3]) == [3, 9]
    with pytest.raises(ActivationError, match="layer 30 is out of range for a model with 30 layers"):
        select_layers(30, [5, 30])
    with pytest.raises(ActivationError, match="empty"):
        select_layers(30, [])
    with pytest.raises(ActivationError, match="layer_range"):
        select_layers(30, layer_range=(0.9, 0.1))


def test_capture_last_token_matches_unpadded_reference(model, tok):
    texts = ["Yes", "What is the capital of France? Paris is the capital.", "How do I bake bread?"]
    captured = capture_layers(model, tok, texts, [0, 2], max_batch=8)
    for layer in (0, 2):  # not the last block: HF's last hidden state is after the final norm
        assert captured[layer].shape == (3, 64)
        for row, text in enumerate(texts):
            expected = reference_hidden(model, tok, text, layer)[-1]
            torch.testing.assert_close(captured[layer][row], expected, atol=1e-4, rtol=1e-4)


def test_capture_mean_over_response_tokens(model, tok):
    prompts = chat_prompts(tok, [(None, "How do I bake bread?", "Mix flour water yeast.")])
    assert prompts.response_tokens[0] > 1
    captured = capture_layers(model, tok, prompts, [2], position="mean_response")
    hidden = reference_hidden(model, tok, prompts.texts[0], 2)
    expected = hidden[-prompts.response_tokens[0] :].mean(0)
    torch.testing.assert_close(captured[2][0], expected, atol=1e-4, rtol=1e-4)


def test_capture_rejects_bad_position_and_layer(model, tok):
    with pytest.raises(ActivationError, match="token position"):
        capture_layers(model, tok, ["Yes"], [1], position="first")
    with pytest.raises(ActivationError, match="layer 7 is out of range for a model with 4 layers"):
        capture_layers(model, tok, ["Yes"], [7])


def test_empty_contrast_set_is_an_error(model, tok):
    with pytest.raises(ActivationError, match="contrast set is empty"):
        contrast_prompt_sets(tok, [])
    with pytest.raises(ActivationError, match="empty"):
        capture_layers(model, tok, PromptSet([], []), [1])


def test_degenerate_contrast_names_the_layer(model, tok):
    same = [ContrastItem("You are a person.", "You are a person.", "How do I bake bread?", "", 0)]
    acts = capture_contrast(model, tok, same, {1: decoder_layers(model)[1]}, show_progress=False)
    with pytest.raises(ActivationError, match="degenerate contrast at layer 1"):
        acts.differences(1)


def test_non_finite_activations_name_the_layer(model, tok):
    with torch.no_grad():
        decoder_layers(model)[2].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(ActivationError, match="non-finite activations .* at layer 2"):
        capture_layers(model, tok, ["How do I bake bread?"], [2])


def test_contrast_capture_pairs_rows_and_hashes_data(model, tok):
    items = contrast_items(small_behavior(), n=5, seed=0)
    modules = {1: decoder_layers(model)[1]}
    acts = capture_contrast(model, tok, items, modules, show_progress=False)
    assert acts.n_pairs == 5 and acts.positive[1].shape == (5, 64)
    positive, _ = contrast_prompt_sets(tok, items)
    expected = reference_hidden(model, tok, positive.texts[3], 1)[-1]
    torch.testing.assert_close(acts.positive[1][3], expected, atol=1e-4, rtol=1e-4)
    again = capture_contrast(model, tok, items, modules, show_progress=False)
    other = capture_contrast(model, tok, items[:4], modules, show_progress=False)
    assert acts.data_hash == again.data_hash != other.data_hash
