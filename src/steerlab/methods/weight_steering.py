"""Contrastive weight steering (Fierro & Roger 2025, arXiv 2511.05408) with six PEFT adapter families.

Pipeline: sample answers to the behaviour's questions under the positive and the negative persona
(cached), train one adapter per pole on (question -> answer) with the persona removed, and take
dW = (W_pos - W_base) - (W_neg - W_base) as a `WeightDelta` (low-rank factors for LoRA and PiSSA).
Registered as ws-lora, ws-dora, ws-pissa, ws-delora, ws-oft and ws-ia3 (family "weight").
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from torch import nn

from steerlab.behaviors import Behavior
from steerlab.interventions import WeightDelta
from steerlab.methods.registry import extract, register_method
from steerlab.methods.weight_adapters import adapter_state
from steerlab.methods.weight_config import FAMILY_CONFIGS, WeightSteeringConfig, family_config
from steerlab.methods.weight_data import GenerationSettings, ResponseFilter, generate_contrast, split_pairs
from steerlab.methods.weight_delta import contrast_delta, side_delta
from steerlab.methods.weight_train import (
    build_examples,
    initial_adapter,
    layer_indices,
    target_modules,
    train_adapter,
)
from steerlab.models import num_layers
from steerlab.progress import report

_logger = logging.getLogger("steerlab.methods.weight_steering")

__all__ = ["FAMILY_CONFIGS", "fit_weight_steering", "generation_settings", "train_seeds"]

_DESCRIPTIONS = {
    "lora": "contrastive weight steering with LoRA adapters (dW kept as rank-2r factors)",
    "dora": "contrastive weight steering with DoRA adapters (magnitude + direction; full-rank dW)",
    "pissa": "contrastive weight steering with PiSSA-initialised LoRA (trained change only; rank-2r dW)",
    "delora": "contrastive weight steering with DeLoRA adapters (bounded normalised low-rank; full-rank dW)",
    "oft": "contrastive weight steering with OFT adapters (block-diagonal rotations; full-rank dW)",
    "ia3": "contrastive weight steering with IA3 adapters (k, v, down_proj rescaling; full-rank dW)",
}


def generation_settings(config: WeightSteeringConfig) -> GenerationSettings:
    """The contrast-generation part of a family config (what the cache is keyed on)."""
    return GenerationSettings(
        n_questions=config.n_questions,
        samples_per_question=config.samples_per_question,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        batch_size=config.generation_batch,
    )


def _log(config: WeightSteeringConfig, message: str) -> None:
    _logger.debug("ws-%s: %s", config.family, message)
    if config.progress:
        report(f"ws-{config.family}", message=message)


def fit_weight_steering(
    model: nn.Module, tokenizer: Any, behavior: Behavior | None, config: WeightSteeringConfig, seed: int
) -> WeightDelta:
    """Contrast data -> one adapter per pole -> dW = dW_pos - dW_neg, as a WeightDelta with provenance."""
    if behavior is None:
        raise ValueError(f"ws-{config.family} needs a behaviour (persona pairs and questions)")
    if not behavior.questions:
        raise ValueError(
            f"behaviour {behavior.name!r} has no questions; weight steering needs a question pool to sample answers to"
        )
    target_modules(model, config)  # bad ranks / roles fail here, before any generation
    started = time.perf_counter()
    data_seed = seed if config.data_seed is None else config.data_seed
    contrast = generate_contrast(
        model,
        tokenizer,
        behavior,
        generation_settings(config),
        seed=data_seed,
        response_filter=ResponseFilter(enabled=config.filter_responses),
        use_cache=config.use_cache,
    )
    source = "cache" if contrast.from_cache else "generated"
    _log(
        config,
        f"contrast data ({source}): {len(contrast.pairs)}/{contrast.generated} pairs kept, dropped {contrast.dropped}",
    )
    if len(contrast.pairs) < 2:
        raise ValueError(
            f"only {len(contrast.pairs)} usable contrast pair(s) for {behavior.name!r} out of {contrast.generated} "
            f"generated (dropped: {contrast.dropped}); raise n_questions or max_new_tokens, or set filter_responses=false"
        )
    train_pairs, val_pairs = split_pairs(contrast.pairs, config.val_fraction, seed)
    sides = {}
    training: dict[str, Any] = {}
    targets: list[str] = []
    adapters: dict[str, Any] = {}
    start = initial_adapter(model, config, seed) if config.costly_init else None  # shared by both poles
    for pole, sign in (("positive", "+"), ("negative", "-")):
        trained = train_adapter(
            model,
            tokenizer,
            build_examples(tokenizer, train_pairs, pole),
            build_examples(tokenizer, val_pairs, pole),
            config,
            seed,
            desc=f"ws-{config.family} {sign}",
            start=start,
        )
        targets = trained.targets
        training[pole] = trained.summary()
        last = trained.history[-1]
        _log(config, f"{pole} adapter: best epoch {trained.best_epoch}, last epoch {last}")
        adapters.update(adapter_state(trained, pole))  # before side_delta: it may merge the adapter
        sides[pole] = side_delta(trained, model, low_rank=config.low_rank)
        del trained
        gc.collect()  # PEFT wrappers hold reference cycles: free this copy before the next
    del start
    deltas = contrast_delta(sides["positive"], sides["negative"], bisector=config.bisector)
    meta = {
        "layers": layer_indices(num_layers(model), config.layer_range),
        "target_modules": targets,
        "adapter_family": config.family,
        "data_seed": data_seed,
        "contrast": contrast.summary(),
        "training": training,
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
    delta = WeightDelta(deltas, meta=meta, adapters=adapters)
    _log(
        config,
        f"dW: {delta.summary()}; held {delta.bytes_held() / 2**20:.1f} MiB of {delta.bytes_dense() / 2**20:.1f} MiB dense",
    )
    return delta


for _family, _config_cls in FAMILY_CONFIGS.items():
    register_method(f"ws-{_family}", "weight", _config_cls, _DESCRIPTIONS[_family])(fit_weight_steering)


def train_seeds(
    model: nn.Module,
    tokenizer: Any,
    behavior: Any,
    family: str = "lora",
    seeds: Sequence[int] = (0, 1, 2),
    config: WeightSteeringConfig | dict[str, Any] | None = None,
    **overrides: Any,
) -> list[WeightDelta]:
    """One weight delta per seed for one family (each seed samples its own contrast data unless the
    config fixes `data_seed`)."""
    family_config(family)
    if isinstance(config, WeightSteeringConfig) and config.family != family:
        raise ValueError(f"config is for family {config.family!r}, but family={family!r} was asked for")
    if isinstance(config, WeightSteeringConfig):
        config = dataclasses.replace(config, **overrides)
        overrides = {}
    return [
        cast(
            WeightDelta,
            extract(model, tokenizer, behavior, f"ws-{family}", seed=seed, config=config, **overrides),
        )
        for seed in seeds
    ]
