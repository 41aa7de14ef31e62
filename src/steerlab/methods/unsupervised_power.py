"""Jacobian power iteration: the top right singular vectors of the Jacobian of a later layer's activations
with respect to a bias added at a source layer, scaled to radius R."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.interventions.vector_bank import VectorBank
from steerlab.methods.registry import register_method
from steerlab.methods.unsupervised_probe import TargetProbe, UnsupervisedConfig, log_progress, open_probe
from steerlab.models import hidden_size


@dataclass
class PowerIterConfig(UnsupervisedConfig):
    """iterations of block power iteration on J^T J; radius None = radius_factor x the source layer's median
    token norm."""

    iterations: int = 15
    radius_factor: float = 1.0


def jacobian_top_singular(
    probe: TargetProbe, d: int, k: int, iterations: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k right singular vectors [k, d] and singular values [k] of J = dZ_target / d theta_source at 0.

    Block power iteration on J^T J with the double-VJP trick: with a dummy cotangent u, autograd gives
    g(u) = J^T u (linear in u); differentiating <g(u), v> in u gives J v; one more VJP gives J^T J v.
    The k vectors ride as k copies of the prompt batch, so each product is one batched pass.
    """
    device = probe.input_ids.device
    theta = torch.zeros(k, d, device=device, requires_grad=True)
    with torch.enable_grad():
        z = probe.run(theta)
        dummy = torch.zeros_like(z, requires_grad=True)
        (jt_u,) = torch.autograd.grad(z, theta, grad_outputs=dummy, create_graph=True)
        v = torch.linalg.qr(
            torch.randn(d, k, generator=generator, dtype=torch.float64).float().to(device)
        ).Q.T

        def jtj(block: torch.Tensor) -> torch.Tensor:
            (j_v,) = torch.autograd.grad(jt_u, dummy, grad_outputs=block, retain_graph=True)
            (jtj_v,) = torch.autograd.grad(z, theta, grad_outputs=j_v, retain_graph=True)
            return jtj_v

        for _ in range(iterations):
            v = torch.linalg.qr(jtj(v).T.double()).Q.T.float()
        products = jtj(v)
    rayleigh = (v.double() @ products.double().T + products.double() @ v.double().T) / 2
    values, rotation = torch.linalg.eigh(rayleigh)
    order = values.argsort(descending=True)
    vectors = (rotation[:, order].T @ v.double()).float()
    for row in range(vectors.shape[0]):  # a sign convention: the largest-magnitude coordinate is positive
        if float(vectors[row, vectors[row].abs().argmax()]) < 0:
            vectors[row] = -vectors[row]
    return vectors.detach(), values[order].clamp(min=0).sqrt().float()


@register_method(
    "power_iter", "unsupervised", PowerIterConfig, "top right singular vectors of the source->target Jacobian"
)
def fit_power_iter(
    model: nn.Module, tokenizer: Any, behavior: Any, config: PowerIterConfig, seed: int
) -> VectorBank:
    if config.n_vectors < 1 or config.iterations < 1:
        raise ValueError(
            f"power_iter: n_vectors and iterations must be >= 1, got {config.n_vectors}, {config.iterations}"
        )
    probe, prompts = open_probe(model, tokenizer, behavior, config, seed, twice_differentiable=True)
    source, target = probe.source, probe.target
    d = hidden_size(model)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    units, singular = jacobian_top_singular(probe, d, config.n_vectors, config.iterations, generator)
    scale = probe.source_norm()
    radius = float(config.radius) if config.radius is not None else config.radius_factor * scale
    log_progress(
        f"power_iter: {config.n_vectors} vectors in {time.perf_counter() - started:.0f}s, top singular value {float(singular[0]):.4g}"
    )
    meta = {
        "model_type": getattr(model.config, "model_type", None),
        "source_layer": source,
        "target_layer": target,
        "radius": radius,
        "source_median_norm": scale,
        "singular_values": singular.tolist(),
        "prompts": prompts,
        "layers": [source],
        "unit_norm": config.unit_norm,
        "seconds": time.perf_counter() - started,
    }
    norm = 1.0 if config.unit_norm else radius
    return VectorBank({source: (norm * units).cpu()}, 0, config.positions, meta)
