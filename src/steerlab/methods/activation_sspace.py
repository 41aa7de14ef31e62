"""S-space steering: the contrast direction taken inside the singular basis of each layer's attention
output (o_proj) and MLP output (down_proj) projections, and added back at those modules' outputs.

For a projection ``W = U S V^T`` (output side ``U``), a module output ``y`` has coordinates
``x_S = U_r^T y`` in the top-``r`` output singular directions. The direction is
``d_S = mean(x_S+) - mean(x_S-)``, mapped back as ``U_r d_S``. With the full basis this equals the
plain mean difference of the module outputs; keeping the top ``r`` (``rank_fraction`` of the output
width by default) restricts steering to the directions the module writes most strongly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from steerlab.activations import capture_contrast
from steerlab.interventions.activation_variants import ModuleAddition
from steerlab.methods.activation import ActivationConfig, chosen_layers, provenance
from steerlab.methods.contrast_data import contrast_pairs, source_record
from steerlab.methods.registry import register_method
from steerlab.models import decoder_layer_prefix, linear_modules

ROLES = ("o", "down")


@dataclass
class SSpaceConfig(ActivationConfig):
    """roles: which projections to steer ('o' attention output, 'down' MLP output);
    rank_fraction: share of the output singular directions kept (1.0 = the plain mean difference)."""

    roles: list[str] = field(default_factory=lambda: list(ROLES))
    rank_fraction: float = 0.25


def output_basis(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Left singular vectors [out, min(out, in)] and singular values of a linear layer's weight, computed on
    the CPU in float64 (where the captured activations they project live, whatever the model's device)."""
    weight = cast(torch.Tensor, module.weight).detach().to("cpu", torch.float64)
    if hasattr(module, "nf"):  # GPT-2 Conv1D stores [in, out]
        weight = weight.T
    u, s, _ = torch.linalg.svd(weight, full_matrices=False)
    return u, s


@register_method(
    "sspace", "activation", SSpaceConfig, "contrast direction in the SVD basis of o_proj/down_proj outputs"
)
def fit_sspace(
    model: nn.Module, tokenizer: Any, behavior: Any, config: SSpaceConfig, seed: int
) -> ModuleAddition:
    unknown = sorted(set(config.roles) - set(ROLES))
    if unknown or not config.roles:
        raise ValueError(f"sspace: roles must be a non-empty subset of {list(ROLES)}, got {config.roles}")
    if not 0.0 < config.rank_fraction <= 1.0:
        raise ValueError(f"sspace: rank_fraction must be in (0, 1], got {config.rank_fraction}")
    layers = chosen_layers(model, config)
    prefix = decoder_layer_prefix(model)
    named = dict(model.named_modules())
    modules: dict[str, nn.Module] = {}
    for layer in layers:
        paths = linear_modules(model, layer)
        for role in config.roles:
            modules[f"{prefix}.{layer}.{paths[role]}"] = named[f"{prefix}.{layer}.{paths[role]}"]
    items = contrast_pairs(behavior, config, seed, "sspace")
    acts = capture_contrast(
        model, tokenizer, items, modules, position=config.token_position, max_batch=config.max_batch
    )
    acts.source = source_record(behavior, config, "sspace")
    vectors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    kept: dict[str, float] = {}
    for name, module in modules.items():
        u, _ = output_basis(module)
        rank = max(1, math.ceil(config.rank_fraction * u.shape[1]))
        basis = u[:, :rank]
        full = acts.differences(name).double().mean(0)
        d_s = basis.T @ full  # mean(x_S+) - mean(x_S-), by linearity
        vectors[name] = (basis @ d_s).float()
        ranks[name] = rank
        kept[name] = float(d_s.norm() / full.norm()) if float(full.norm()) > 0 else 0.0
    meta = provenance(acts, layers, roles=list(config.roles), ranks=ranks, contrast_norm_kept=kept)
    meta["scale"] = "raw mean difference of module outputs, projected on the top output singular directions"
    return ModuleAddition(vectors, positions=config.positions, meta=meta)
