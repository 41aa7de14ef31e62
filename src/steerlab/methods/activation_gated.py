"""Token-dependent activation steering: per-token cluster vectors (topk_clusters) and cosine gating."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.activations import ActivationError
from steerlab.interventions.activation_variants import ClusterAddition, CosineGatedAddition
from steerlab.methods.activation import (
    ActivationConfig,
    chosen_layers,
    contrast_for,
    mean_difference,
    provenance,
)
from steerlab.methods.registry import register_method


@dataclass
class ClustersConfig(ActivationConfig):
    """k: clusters of paired differences; iterations: k-means rounds (stops early when stable)."""

    k: int = 4
    iterations: int = 50


def spherical_kmeans(points: torch.Tensor, k: int, seed: int, iterations: int = 50) -> torch.Tensor:
    """k-means with cosine assignment (k-means++ seeding under `seed`); returns labels [n].

    An emptied cluster is re-seeded with the point least similar to its current centroid.
    """
    units = F.normalize(points.double(), dim=-1)
    n = units.shape[0]
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [units[first]]
    for _ in range(1, k):
        similarity = torch.stack([units @ c for c in centres]).amax(0)
        weights = (1.0 - similarity).clamp(min=0) ** 2
        if float(weights.sum()) <= 0:
            weights = torch.ones(n, dtype=torch.float64)
        centres.append(units[int(torch.multinomial(weights, 1, generator=generator))])
    centroids = torch.stack(centres)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iterations):
        similarity = units @ centroids.T
        new_labels = similarity.argmax(-1)
        for cluster in range(k):
            if not bool((new_labels == cluster).any()):
                own = similarity[torch.arange(n), new_labels]
                new_labels[own.argmin()] = cluster
        if bool((new_labels == labels).all()):
            break
        labels = new_labels
        centroids = torch.stack([F.normalize(units[labels == c].sum(0), dim=0) for c in range(k)])
    return labels


@register_method(
    "topk_clusters",
    "activation",
    ClustersConfig,
    "k-means (cosine) of paired differences; each token gets its nearest centroid (k=4)",
)
def fit_topk_clusters(
    model: nn.Module, tokenizer: Any, behavior: Any, config: ClustersConfig, seed: int
) -> ClusterAddition:
    if config.k < 1:
        raise ValueError(f"topk_clusters: k must be >= 1, got {config.k}")
    layers = chosen_layers(model, config)
    acts = contrast_for(model, tokenizer, behavior, config, seed, layers, "topk_clusters")
    if acts.n_pairs < config.k:
        raise ActivationError(
            f"topk_clusters: {acts.n_pairs} contrast pairs cannot form k={config.k} clusters; raise n_pairs or lower k"
        )
    centroids: dict[int, torch.Tensor] = {}
    sizes: dict[str, list[int]] = {}
    for layer in layers:
        diffs = acts.differences(layer).double()
        labels = spherical_kmeans(diffs, config.k, seed, config.iterations)
        mean = diffs.mean(0)
        rows = []
        for cluster in range(config.k):
            centroid = diffs[labels == cluster].mean(0)
            rows.append(-centroid if float(centroid @ mean) < 0 else centroid)
        centroids[layer] = torch.stack(rows).float()
        sizes[str(layer)] = [int((labels == c).sum()) for c in range(config.k)]
    meta = provenance(
        acts, layers, k=config.k, cluster_sizes=sizes, scale="raw cluster means of paired differences"
    )
    return ClusterAddition(centroids, positions=config.positions, meta=meta)


@dataclass
class CosineGatedConfig(ActivationConfig):
    """tau: gate threshold on |cos(h, v)|; None = per layer, the median |cos| over the contrast activations
    (so about half the tokens of such text are steered)."""

    tau: float | None = None


@register_method(
    "cosine_gated",
    "activation",
    CosineGatedConfig,
    "h + c * v * max(0, |cos(h, v)| - tau) with v the mean difference",
)
def fit_cosine_gated(
    model: nn.Module, tokenizer: Any, behavior: Any, config: CosineGatedConfig, seed: int
) -> CosineGatedAddition:
    if config.tau is not None and not 0.0 <= config.tau < 1.0:
        raise ValueError(f"cosine_gated: tau must be in [0, 1), got {config.tau}")
    layers = chosen_layers(model, config)
    acts = contrast_for(model, tokenizer, behavior, config, seed, layers, "cosine_gated")
    vectors, taus = {}, {}
    for layer in layers:
        vector = mean_difference(acts, layer)
        vectors[layer] = vector
        if config.tau is None:
            hidden = torch.cat([acts.positive[layer], acts.negative[layer]])
            cosines = F.cosine_similarity(hidden, vector[None, :], dim=-1).abs()
            taus[layer] = float(cosines.median())
        else:
            taus[layer] = float(config.tau)
    meta = provenance(
        acts, layers, tau={str(k): v for k, v in taus.items()}, scale="raw mean difference, gated"
    )
    return CosineGatedAddition(vectors, taus, positions=config.positions, meta=meta)
