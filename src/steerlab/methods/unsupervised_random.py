"""Random steering directions: the null band every report can show.

Several random Gaussian directions (one per seed) at the activation methods' layers, each scaled to the
norm of the behaviour's mean difference at that layer, so a random control moves activations as far
as the real steering vector does. Kept in a :class:`VectorBank` like the other unsupervised methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.interventions.vector_bank import VectorBank
from steerlab.methods.activation import ActivationConfig, chosen_layers, contrast_for, mean_difference
from steerlab.methods.registry import register_method
from steerlab.models import hidden_size, num_layers


@dataclass
class RandomConfig(ActivationConfig):
    """n_vectors: random directions (seeds seed*1000 + i); norm: per-layer norm, None = the norm of the
    behaviour's mean difference at that layer (norm-matched null band); depth: one layer at
    int(depth x n_layers) instead of ``layers`` (0.25 = the default source layer of melbo / power_iter)."""

    n_vectors: int = 8
    norm: float | None = None
    depth: float | None = None


@register_method(
    "random", "unsupervised", RandomConfig, "norm-matched random directions (null band), several seeds"
)
def fit_random(
    model: nn.Module, tokenizer: Any, behavior: Any, config: RandomConfig, seed: int
) -> VectorBank:
    if config.n_vectors < 1:
        raise ValueError(f"random: n_vectors must be >= 1, got {config.n_vectors}")
    if config.depth is not None and not 0 <= config.depth < 1:
        raise ValueError(f"random: depth must be in [0, 1), got {config.depth}")
    layers = (
        [int(config.depth * num_layers(model))] if config.depth is not None else chosen_layers(model, config)
    )
    d = hidden_size(model)
    if config.norm is not None:
        if not config.norm > 0:
            raise ValueError(f"random: norm must be > 0, got {config.norm}")
        norms = {layer: float(config.norm) for layer in layers}
        data_hash = None
    else:
        if behavior is None:
            raise ValueError(
                "random: with no behaviour, give norm=... (there is no mean difference to match)"
            )
        acts = contrast_for(model, tokenizer, behavior, config, seed, layers, "random")
        norms = {layer: float(mean_difference(acts, layer).norm()) for layer in layers}
        data_hash = acts.data_hash
    banks = {layer: torch.empty(config.n_vectors, d) for layer in layers}
    for index in range(config.n_vectors):
        generator = torch.Generator().manual_seed(seed * 1000 + index)
        for layer in layers:
            direction = F.normalize(torch.randn(d, generator=generator, dtype=torch.float64), dim=0)
            banks[layer][index] = (norms[layer] * direction).float()
    meta = {
        "model_type": getattr(model.config, "model_type", None),
        "layers": layers,
        "norms": {str(k): v for k, v in norms.items()},
        "seeds": [seed * 1000 + i for i in range(config.n_vectors)],
        "data_hash": data_hash,
        "scale": "norm-matched to the mean difference" if config.norm is None else "fixed norm",
    }
    return VectorBank(banks, 0, config.positions, meta)
