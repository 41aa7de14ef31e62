"""Unsupervised steering vectors (no behaviour labels): MELBO, Jacobian power iteration, random controls.

MELBO (Mack & Turner 2024) learns biases of norm R, added at a source layer's output, that most
change a later layer's activations on a few prompts. Power iteration finds the top right singular
vectors of the Jacobian of those activations w.r.t. such a bias. Random vectors, norm-matched to the
behaviour's mean difference, give the null band. Each returns a :class:`VectorBank` keeping every
vector; which index steers a behaviour is chosen later on held-out data (``select_best_index``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from steerlab.activations import chat_prompts, select_layers
from steerlab.interventions.vector_bank import VectorBank
from steerlab.methods.registry import register_method
from steerlab.models import decoder_layers, hidden_size, model_device, num_layers
from steerlab.progress import report
from steerlab.scoring import encode, pad_left

_logger = logging.getLogger("steerlab.methods.unsupervised")


class _StopAtTarget(Exception):
    """Raised once the target layer ran: later blocks and the LM head are not needed."""


@dataclass
class UnsupervisedConfig:
    """source_layer: where the bias is added (the block's output, i.e. after its MLP); None = depth // 4.
    target_layer: whose activations it should change; None = n_layers - 8, clipped above the source.
    n_prompts: prompts (the behaviour's questions, else steerlab's pool); token_positions: last T tokens.
    radius: bias norm R; None = chosen automatically (see each method).
    prompts: the source prompts themselves (user turns; n_prompts is then ignored), under ``system``;
    None = the behaviour's questions. unit_norm: save every vector at norm 1 (R still sets the training
    scale), so a fixed coefficient means the same for every vector and method."""

    source_layer: int | None = None
    target_layer: int | None = None
    n_prompts: int = 4
    token_positions: int = 2
    n_vectors: int = 8
    radius: float | None = None
    positions: str = "all"
    prompts: tuple[str, ...] | None = None
    system: str | None = None
    unit_norm: bool = False


def _source_target(model: nn.Module, config: UnsupervisedConfig) -> tuple[int, int]:
    n = num_layers(model)
    source = select_layers(n, [config.source_layer])[0] if config.source_layer is not None else max(0, n // 4)
    if config.target_layer is not None:
        target = select_layers(n, [config.target_layer])[0]
    else:
        target = min(max(n - 8, source + 1), n - 1)
    if target <= source:
        raise ValueError(
            f"target layer {target} must come after source layer {source} (model has {n} layers)"
        )
    return source, target


def unsupervised_prompts(
    tokenizer: Any,
    behavior: Any,
    n_prompts: int,
    seed: int,
    prompts: tuple[str, ...] | None = None,
    system: str | None = None,
) -> list[str]:
    """The given `prompts`, else `n_prompts` user questions (the behaviour's, else the built-in pool);
    chat-formatted under `system` (None: no system turn)."""
    from steerlab.behaviors import builtin_questions

    if prompts is not None:
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r}")
        return chat_prompts(tokenizer, [(system, prompt, "") for prompt in prompts]).texts
    if n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1, got {n_prompts}")
    pool = (
        list(behavior.questions) if behavior is not None and behavior.questions else list(builtin_questions())
    )
    random.Random(seed).shuffle(pool)
    return chat_prompts(tokenizer, [(system, question, "") for question in pool[:n_prompts]]).texts


class TargetProbe:
    """Activations at the target layer's last T tokens as a function of a bias added at the source layer.

    ``run(theta)`` takes theta [d] (same bias for every prompt) or [k, d] (bias i for the i-th copy of
    the prompt batch, so k biases are evaluated in one pass) and returns [copies * prompts, T, d].
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        prompts: list[str],
        source: int,
        target: int,
        tokens: int,
        twice_differentiable: bool = False,
    ):
        encoded = encode(tokenizer, prompts)
        shortest = min(len(ids) for ids in encoded)
        if tokens < 1 or tokens > shortest:
            raise ValueError(
                f"token_positions must be in 1..{shortest} (the shortest prompt's length), got {tokens}"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.input_ids, self.mask = pad_left(encoded, pad, model_device(model))
        self.model, self.source, self.target, self.tokens = model, source, target, tokens
        self.n_prompts = len(prompts)
        self.twice_differentiable = twice_differentiable

    def run(self, theta: torch.Tensor) -> torch.Tensor:
        copies = 1 if theta.dim() == 1 else theta.shape[0]
        bias = (
            theta.reshape(copies, 1, 1, -1)
            .expand(copies, self.n_prompts, 1, -1)
            .reshape(copies * self.n_prompts, 1, -1)
        )
        input_ids, mask = self.input_ids.repeat(copies, 1), self.mask.repeat(copies, 1)
        blocks = decoder_layers(self.model)
        found: dict[str, torch.Tensor] = {}

        def add_bias(_m: nn.Module, _i: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor):
                return output + bias.to(output.dtype)
            return (output[0] + bias.to(output[0].dtype), *output[1:])

        def read(_m: nn.Module, _i: Any, output: Any) -> None:
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            found["z"] = hidden[:, -self.tokens :, :]
            raise _StopAtTarget

        handles = [
            blocks[self.source].register_forward_hook(add_bias),
            blocks[self.target].register_forward_hook(read),
        ]
        try:
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            # power iteration differentiates a gradient: only the math attention kernel supports that
            kernel = sdpa_kernel(SDPBackend.MATH) if self.twice_differentiable else contextlib.nullcontext()
            with kernel:
                self.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
                )
        except _StopAtTarget:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return found["z"].float()

    def source_norm(self) -> float:
        """Median norm of the source layer's output over real (non-pad) tokens: the natural scale of R."""
        blocks = decoder_layers(self.model)
        found: dict[str, torch.Tensor] = {}

        def read(_m: nn.Module, _i: Any, output: Any) -> None:
            found["h"] = output if isinstance(output, torch.Tensor) else output[0]
            raise _StopAtTarget

        handle = blocks[self.source].register_forward_hook(read)
        position_ids = (self.mask.cumsum(-1) - 1).clamp(min=0)
        try:
            with torch.no_grad():
                self.model(
                    input_ids=self.input_ids,
                    attention_mask=self.mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
        except _StopAtTarget:
            pass
        finally:
            handle.remove()
        norms = found["h"].float().norm(dim=-1)[self.mask.bool()]
        return float(norms.median())


def _log(message: str) -> None:
    _logger.debug(message)
    report("unsupervised", message=message)


# ---------------------------------------------------------------------------------------------- MELBO


@dataclass
class MelboConfig(UnsupervisedConfig):
    """p, q: objective (sum_tokens ||dZ||^p)^(1/q); steps per vector; lr_scale: Adam step size as a fraction
    of R / sqrt(d); radius_factors: R sweep as multiples of the source layer's median token norm (the
    radius with the largest amplification (objective^(q/p) / R) wins); sweep_steps per sweep point.
    Defaults (2 prompts, 8 vectors x 48 steps at lr_scale 0.2, 4 x 8 sweep steps) take ~1.5 min on 2 CPU
    cores for smollm2-135m; on that model 48 steps at 0.2 reach the objective that 96 steps at 0.1 reach
    (within 2%, three seeds), while 32 steps at 0.1 stop 25-55% short."""

    n_prompts: int = 2
    p: float = 2.0
    q: float = 1.0
    steps: int = 48
    lr_scale: float = 0.2
    radius_factors: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    sweep_steps: int = 8


def _melbo_vector(
    probe: TargetProbe,
    base: torch.Tensor,
    radius: float,
    previous: list[torch.Tensor],
    config: MelboConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """One MELBO vector: Adam on the sphere of radius R, orthogonal to `previous`; returns (theta, objective)."""
    d = base.shape[-1]
    dtype, device = base.dtype, base.device

    def orthogonalise(vector: torch.Tensor) -> torch.Tensor:
        for other in previous:
            vector = vector - (vector @ other) * other
        return vector

    start = orthogonalise(torch.randn(d, generator=generator, dtype=torch.float64).to(device, dtype))
    theta = (radius * F.normalize(start, dim=0)).requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=config.lr_scale * radius / math.sqrt(d))
    for _ in range(config.steps):
        optimiser.zero_grad()
        delta = probe.run(theta) - base
        value = delta.norm(dim=-1).pow(config.p).sum().pow(1.0 / config.q)
        (-value).backward()
        with torch.no_grad():
            grad = theta.grad
            unit = theta / theta.norm()
            grad -= (grad @ unit) * unit
            theta.grad = orthogonalise(grad)
        optimiser.step()
        with torch.no_grad():
            theta.copy_(radius * F.normalize(orthogonalise(theta), dim=0))
    with torch.no_grad():
        final = probe.run(theta) - base
        objective = float(final.norm(dim=-1).pow(config.p).sum().pow(1.0 / config.q))
    return theta.detach(), objective


@register_method(
    "melbo", "unsupervised", MelboConfig, "MELBO: biases of norm R that most change a later layer"
)
def fit_melbo(model: nn.Module, tokenizer: Any, behavior: Any, config: MelboConfig, seed: int) -> VectorBank:
    if config.n_vectors < 1 or config.steps < 1:
        raise ValueError(
            f"melbo: n_vectors and steps must be >= 1, got {config.n_vectors} and {config.steps}"
        )
    source, target = _source_target(model, config)
    prompts = unsupervised_prompts(tokenizer, behavior, config.n_prompts, seed, config.prompts, config.system)
    probe = TargetProbe(model, tokenizer, prompts, source, target, config.token_positions)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    with torch.no_grad():
        base = probe.run(torch.zeros(hidden_size(model), device=model_device(model)))
    scale = probe.source_norm()
    sweep: dict[str, float] = {}
    if config.radius is not None:
        radius = float(config.radius)
    else:
        if not config.radius_factors:
            raise ValueError("melbo: radius_factors is empty; give radius or at least one factor")
        sweep_config = MelboConfig(**{**config.__dict__, "steps": config.sweep_steps})
        best = -1.0
        radius = scale * config.radius_factors[0]
        for factor in config.radius_factors:
            candidate = scale * factor
            _, objective = _melbo_vector(probe, base, candidate, [], sweep_config, generator)
            amplification = objective ** (config.q / config.p) / candidate
            sweep[f"{candidate:.4g}"] = objective
            _log(
                f"melbo: R sweep R={candidate:.3g} objective={objective:.4g} amplification={amplification:.3g}"
            )
            if amplification > best:
                best, radius = amplification, candidate
    vectors: list[torch.Tensor] = []
    objectives: list[float] = []
    for index in range(config.n_vectors):
        units = [v / v.norm() for v in vectors]
        theta, objective = _melbo_vector(probe, base, radius, units, config, generator)
        vectors.append(theta)
        objectives.append(objective)
        _log(
            f"melbo: vector {index + 1}/{config.n_vectors} objective={objective:.4g} ({time.perf_counter() - started:.0f}s)"
        )
    meta = {
        "model_type": getattr(model.config, "model_type", None),
        "source_layer": source,
        "target_layer": target,
        "radius": radius,
        "radius_sweep": sweep,
        "source_median_norm": scale,
        "objectives": objectives,
        "prompts": prompts,
        "layers": [source],
        "unit_norm": config.unit_norm,
        "seconds": time.perf_counter() - started,
    }
    bank = torch.stack(vectors).float().cpu()
    if config.unit_norm:
        bank = F.normalize(bank, dim=-1)
    return VectorBank({source: bank}, 0, config.positions, meta)


# ---------------------------------------------------------------------------------------------- power iteration


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
    source, target = _source_target(model, config)
    prompts = unsupervised_prompts(tokenizer, behavior, config.n_prompts, seed, config.prompts, config.system)
    probe = TargetProbe(
        model, tokenizer, prompts, source, target, config.token_positions, twice_differentiable=True
    )
    d = hidden_size(model)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    units, singular = jacobian_top_singular(probe, d, config.n_vectors, config.iterations, generator)
    scale = probe.source_norm()
    radius = float(config.radius) if config.radius is not None else config.radius_factor * scale
    _log(
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
