"""Weight steering on smollm2-135m, small settings: the delta steers towards the positive pole's responses.

The sign check: on the contrast pairs it was trained on, +c must make the positive persona's responses
(asked without the persona) more likely relative to the negative persona's, and -c the reverse.
"""

from __future__ import annotations

import pytest
import torch

from steerlab.behaviors import get_behavior
from steerlab.methods import extract, weight_data
from steerlab.methods.weight_config import family_config
from steerlab.methods.weight_data import ResponseFilter, generate_contrast
from steerlab.methods.weight_steering import generation_settings
from steerlab.methods.weight_train import _loss, build_examples
from steerlab.models import model_device
from steerlab.scoring import encode, forward_logits, pad_left

pytestmark = pytest.mark.integration

SMALL = {
    "n_questions": 8,
    "max_new_tokens": 16,
    "epochs": 2,
    "batch_size": 4,
    "val_fraction": 0.25,
    "rank": 4,
    "alpha": 8.0,
    "learning_rate": 2e-3,
    "layer_range": (0.4, 0.7),
    "progress": False,
}


@pytest.fixture()
def private_contrast_cache(tmp_path, monkeypatch):
    """Contrast data goes to a fresh folder; the converted model stays in the user cache."""
    monkeypatch.setattr(weight_data, "cache_dir", lambda: tmp_path)


def _mean_nll(model, tok, examples) -> float:
    total, tokens = _loss(model, examples, tok.pad_token_id, model_device(model), tail_logits=True)
    return float(total) / tokens


def test_ws_lora_on_smollm2_steers_towards_the_positive_pole(smol, private_contrast_cache):
    model, tok = smol
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    behavior = get_behavior("honesty")

    delta = extract(model, tok, behavior, "ws-lora", seed=0, config=SMALL)

    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert set(delta.meta["layers"]) == {12, 13, 14, 15, 16, 17, 18, 19, 20}  # depth 0.4-0.7 of 30
    assert all(factor.up.shape[1] == 2 * SMALL["rank"] for factor in delta.deltas.values())  # rank-2r, exact

    config = family_config("lora")(**SMALL)
    contrast = generate_contrast(
        model,
        tok,
        behavior,
        generation_settings(config),
        seed=0,
        response_filter=ResponseFilter(enabled=config.filter_responses),
    )
    assert contrast.from_cache  # the same pairs extract trained on
    positive = build_examples(tok, contrast.pairs, "positive")
    negative = build_examples(tok, contrast.pairs, "negative")
    margins = {}
    with torch.no_grad():
        for coeff in (-1.0, 0.0, 1.0):
            with delta.apply(model, coeff):
                margins[coeff] = _mean_nll(model, tok, negative) - _mean_nll(model, tok, positive)
    assert margins[-1.0] < margins[0.0] < margins[1.0], margins

    prompts = encode(tok, ["<|im_start|>user\nIs honesty important?<|im_end|>\n<|im_start|>assistant\n"])
    input_ids, mask = pad_left(prompts, tok.pad_token_id, model_device(model))
    with torch.inference_mode():
        base = forward_logits(model, input_ids, mask, last_only=True)
        with delta.apply(model, 0.0):
            assert torch.equal(forward_logits(model, input_ids, mask, last_only=True), base)
        with delta.apply(model, 1.0):
            assert not torch.equal(forward_logits(model, input_ids, mask, last_only=True), base)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
