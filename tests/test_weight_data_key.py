"""The contrast cache key covers the generation batch size: sampling is seeded per batch."""

from __future__ import annotations

from steerlab.behaviors import Behavior, PersonaPair
from steerlab.methods.weight_config import family_config
from steerlab.methods.weight_data import GenerationSettings, contrast_key
from steerlab.methods.weight_steering import generation_settings


def test_generation_batch_is_in_the_contrast_key(model, tok):
    behavior = Behavior(
        "tiny", "test axis", "a", "b", (PersonaPair("Be a.", "Be b."),), None, ("Why?", "How?"), ()
    )
    keys = {
        batch: contrast_key(model, tok, behavior, 0, GenerationSettings(n_questions=2, batch_size=batch))
        for batch in (1, 2, 64)
    }
    assert len(set(keys.values())) == 3
    again = contrast_key(model, tok, behavior, 0, GenerationSettings(n_questions=2, batch_size=2))
    assert again == keys[2]


def test_config_default_generation_batch_matches_the_settings_default():
    assert generation_settings(family_config("lora")()).batch_size == GenerationSettings().batch_size
