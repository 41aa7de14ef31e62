"""Activation steering from contrast pairs: CAA mean difference, centred mean, RepE PCA, all-layer
RepE, directional ablation.

Every method captures decoder-block outputs for the behaviour's persona-paired prompts (same user
message and assistant prefix, only the persona differs) in batched passes, at the last non-pad token
by default, on layers 0.2-0.8 of depth (never the first or last two) unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.activations import (
    DEFAULT_LAYER_RANGE,
    ContrastActivations,
    capture_contrast,
    select_layers,
)
from steerlab.interventions import ActivationAddition
from steerlab.interventions.activation_variants import DirectionalAblation
from steerlab.methods.contrast_data import check_source, contrast_pairs, source_record
from steerlab.methods.registry import register_method
from steerlab.models import decoder_layers, num_layers


@dataclass
class ActivationConfig:
    """Shared options of contrastive activation methods.

    layers: explicit decoder-block indices (negative counts from the end); None = by `layer_range`.
    layer_range: depth fractions (low, high); the first and last two blocks are never chosen.
    token_position: 'last' (last prompt token, CAA / repeng) or 'mean_response' (mean over the
      assistant-prefix tokens).
    n_pairs: contrast pairs drawn from the behaviour (None = its whole pool); with source='scenarios' a cap
      (a seeded sample when the trait has more; never repeated).
    use_suffixes: give each question an assistant-response opening (repeng-style) when the behaviour has them.
    max_batch: prompts per forward pass.
    positions: where the intervention acts at run time ('all', 'prompt' or 'generated').
    source: the contrast pairs: 'personas' (the behaviour's persona prompts) or 'scenarios' (a trait's
      lock-in completions; see steerlab.methods.contrast_data).
    trait: with source='scenarios', the trait (built-in name or file) whose scenarios are read; None = the
      behaviour's name.
    """

    layers: list[int] | None = None
    layer_range: list[float] = field(default_factory=lambda: list(DEFAULT_LAYER_RANGE))
    token_position: str = "last"
    n_pairs: int | None = 64
    use_suffixes: bool = True
    max_batch: int = 32
    positions: str = "all"
    source: str = "personas"
    trait: str | None = None

    def __post_init__(self) -> None:
        check_source(self.source)


def require_behavior(behavior: Any, method: str) -> Any:
    if behavior is None:
        raise ValueError(f"method {method!r} is contrastive and needs a behaviour (its persona pairs)")
    return behavior


def contrast_for(
    model: nn.Module,
    tokenizer: Any,
    behavior: Any,
    config: ActivationConfig,
    seed: int,
    layers: list[int],
    method: str,
) -> ContrastActivations:
    """Capture the contrast pairs `config` asks for (persona prompts or lock-in scenarios) at `layers`."""
    items = contrast_pairs(behavior, config, seed, method)
    blocks = decoder_layers(model)
    modules = {layer: blocks[layer] for layer in layers}
    acts = capture_contrast(
        model, tokenizer, items, modules, position=config.token_position, max_batch=config.max_batch
    )
    acts.source = source_record(behavior, config, method)
    return acts


def chosen_layers(model: nn.Module, config: ActivationConfig) -> list[int]:
    return select_layers(num_layers(model), config.layers, config.layer_range)


def provenance(acts: ContrastActivations, layers: list[int], **extra: Any) -> dict[str, Any]:
    """What every contrastive intervention records: layers, token position, pair count, data hash (of the
    exact prompt texts), and where the contrast pairs came from (`contrast_data.source_record`)."""
    return {
        "model_type": acts.model_type,
        "layers": list(layers),
        "token_position": acts.token_position,
        "n_pairs": acts.n_pairs,
        "data_hash": acts.data_hash,
        **acts.source,
        **extra,
    }


# ---------------------------------------------------------------------------------------------- vectors


def mean_difference(acts: ContrastActivations, layer: Any) -> torch.Tensor:
    """CAA: mean(h+) - mean(h-) = mean of the paired differences."""
    return acts.differences(layer).double().mean(0).float()


def mean_centred(acts: ContrastActivations, layer: Any) -> torch.Tensor:
    """mean(h+) - mean(h+ and h-): the positive mean relative to the centre of both poles."""
    acts.differences(layer)  # refuse a degenerate contrast with a clear error
    positive, negative = acts.positive[layer].double(), acts.negative[layer].double()
    return (positive.mean(0) - torch.cat([positive, negative]).mean(0)).float()


@dataclass
class PcaDirection:
    direction: torch.Tensor  # unit norm
    mean_projection: float  # mean of (h+ - h-) . direction, > 0 after the sign vote
    explained: float  # fraction of the centred differences' variance along the direction


def pca_direction(acts: ContrastActivations, layer: Any) -> PcaDirection:
    """RepE / repeng pca_diff: top right singular vector of the centred paired differences, signed by a
    majority vote of the pairs (positive pole projects higher; a tie goes to the mean difference), unit norm."""
    diffs = acts.differences(layer).double()
    centred = diffs - diffs.mean(0, keepdim=True)
    if diffs.shape[0] < 2 or not bool(centred.abs().amax() > 0):
        direction = F.normalize(diffs.mean(0), dim=0)  # one pair (or identical pairs): the difference itself
        singular = torch.zeros(1, dtype=torch.float64)
    else:
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        direction = vh[0]
    projections = diffs @ direction
    votes_for, votes_against = int((projections > 0).sum()), int((projections < 0).sum())
    tie_break = votes_for == votes_against and float(projections.mean()) < 0
    if votes_against > votes_for or tie_break:
        direction = -direction
        projections = -projections
    total = float((singular**2).sum())
    explained = float(singular[0] ** 2 / total) if total > 0 else 1.0
    return PcaDirection(direction.float(), float(projections.mean()), explained)


# ---------------------------------------------------------------------------------------------- methods


def _addition(
    vectors: dict[int, torch.Tensor], config: ActivationConfig, meta: dict[str, Any]
) -> ActivationAddition:
    meta["vector_norms"] = {str(layer): float(v.norm()) for layer, v in vectors.items()}
    return ActivationAddition(vectors, positions=config.positions, meta=meta)


@register_method("mean_diff", "activation", ActivationConfig, "CAA: mean(h+) - mean(h-) per layer (raw norm)")
def fit_mean_diff(
    model: nn.Module, tokenizer: Any, behavior: Any, config: ActivationConfig, seed: int
) -> ActivationAddition:
    layers = chosen_layers(model, config)
    acts = contrast_for(model, tokenizer, behavior, config, seed, layers, "mean_diff")
    vectors = {layer: mean_difference(acts, layer) for layer in layers}
    return _addition(vectors, config, provenance(acts, layers, scale="raw mean difference"))


@register_method(
    "mean_centred", "activation", ActivationConfig, "mean(h+) - mean(h+ and h-) per layer (raw norm)"
)
def fit_mean_centred(
    model: nn.Module, tokenizer: Any, behavior: Any, config: ActivationConfig, seed: int
) -> ActivationAddition:
    layers = chosen_layers(model, config)
    acts = contrast_for(model, tokenizer, behavior, config, seed, layers, "mean_centred")
    vectors = {layer: mean_centred(acts, layer) for layer in layers}
    return _addition(vectors, config, provenance(acts, layers, scale="raw centred mean"))


def _pca_addition(
    model: nn.Module,
    tokenizer: Any,
    behavior: Any,
    config: ActivationConfig,
    seed: int,
    layers: list[int],
    name: str,
) -> ActivationAddition:
    acts = contrast_for(model, tokenizer, behavior, config, seed, layers, name)
    found = {layer: pca_direction(acts, layer) for layer in layers}
    meta = provenance(
        acts,
        layers,
        scale="unit norm per layer; c = mean_projection[layer] shifts activations by one average pair difference",
        mean_projection={str(layer): pca.mean_projection for layer, pca in found.items()},
        explained_variance={str(layer): pca.explained for layer, pca in found.items()},
    )
    return _addition({layer: pca.direction for layer, pca in found.items()}, config, meta)


@register_method(
    "pca",
    "activation",
    ActivationConfig,
    "RepE reading vector: top PC of centred paired differences (unit norm)",
)
def fit_pca(
    model: nn.Module, tokenizer: Any, behavior: Any, config: ActivationConfig, seed: int
) -> ActivationAddition:
    return _pca_addition(model, tokenizer, behavior, config, seed, chosen_layers(model, config), "pca")


@dataclass
class AllLayersConfig(ActivationConfig):
    """repeng's default layer set: every block but the first (``layers`` still overrides)."""

    skip_first: int = 1


@register_method(
    "repe_all_layers",
    "activation",
    AllLayersConfig,
    "RepE/repeng pca_diff vector at every layer but the first",
)
def fit_repe_all_layers(
    model: nn.Module, tokenizer: Any, behavior: Any, config: AllLayersConfig, seed: int
) -> ActivationAddition:
    n = num_layers(model)
    if config.layers is not None:
        layers = select_layers(n, config.layers)
    else:
        if not 0 <= config.skip_first < n:
            raise ValueError(f"repe_all_layers: skip_first must be in 0..{n - 1}, got {config.skip_first}")
        layers = list(range(config.skip_first, n))
    return _pca_addition(model, tokenizer, behavior, config, seed, layers, "repe_all_layers")


@dataclass
class AblationConfig(ActivationConfig):
    """direction_layer: where the (unit) mean-difference direction is read; None = the middle of the
    selected layers. ablate_layers: where it is removed; None = every layer (Arditi et al. 2024)."""

    direction_layer: int | None = None
    ablate_layers: list[int] | None = None


@register_method(
    "directional_ablation",
    "activation",
    AblationConfig,
    "remove (c > 0) or amplify (c < 0) the contrast direction",
)
def fit_directional_ablation(
    model: nn.Module, tokenizer: Any, behavior: Any, config: AblationConfig, seed: int
) -> DirectionalAblation:
    n = num_layers(model)
    if config.direction_layer is not None:
        direction_layer = select_layers(n, [config.direction_layer])[0]
    else:
        candidates = chosen_layers(model, config)
        direction_layer = candidates[len(candidates) // 2]
    ablate = select_layers(n, config.ablate_layers) if config.ablate_layers is not None else list(range(n))
    acts = contrast_for(model, tokenizer, behavior, config, seed, [direction_layer], "directional_ablation")
    direction = F.normalize(mean_difference(acts, direction_layer), dim=0)
    meta = provenance(acts, [direction_layer], direction_layer=direction_layer, ablate_layers=ablate)
    meta["scale"] = "c = 1 removes the direction's component, c = -1 doubles it"
    return DirectionalAblation({layer: direction for layer in ablate}, positions=config.positions, meta=meta)
