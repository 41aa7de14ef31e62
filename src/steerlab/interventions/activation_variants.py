"""Activation interventions beyond plain addition: per-token cluster choice, cosine gating,
directional ablation, and additions at the output of submodules (attention / MLP projections).

All are exactly the base model at ``c = 0`` (no hook is installed) and save as tensors + JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.interventions.activation import (
    LayerHookIntervention,
    join_output,
    split_output,
)
from steerlab.interventions.base import InterventionError, check_finite, register_kind
from steerlab.models import first_block, hidden_size
from steerlab.positions import position_mask
from steerlab.row_coefficients import edit_rows, required_coefficients


def _layer_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[int, torch.Tensor]:
    return {int(name.split(".", 1)[1]): t for name, t in tensors.items() if name.startswith(f"{prefix}.")}


def _float_map(values: dict[int, torch.Tensor], where: str, ndim: int) -> dict[int, torch.Tensor]:
    if not values:
        raise InterventionError(f"{where} needs at least one layer")
    out = {int(k): torch.as_tensor(v).detach().float() for k, v in values.items()}
    for layer, tensor in out.items():
        if tensor.dim() != ndim:
            raise InterventionError(
                f"{where}: layer {layer} tensor has shape {tuple(tensor.shape)}, expected {ndim}-D"
            )
    check_finite({f"layer.{k}": v for k, v in out.items()}, where)
    return out


@register_kind
class ClusterAddition(LayerHookIntervention):
    """Several candidate vectors per layer; each token gets ``c *`` the one whose direction is
    nearest (highest cosine) to its hidden state (topk_clusters)."""

    kind: ClassVar[str] = "cluster_addition"

    def __init__(
        self, centroids: dict[int, torch.Tensor], positions: str = "all", meta: dict[str, Any] | None = None
    ) -> None:
        self.centroids = _float_map(centroids, "ClusterAddition", ndim=2)
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def layers(self) -> list[int]:
        return sorted(self.centroids)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        self._prepared = {}
        for layer, c in self.centroids.items():
            self._prepared[layer] = (c.to(device, dtype), F.normalize(c, dim=-1).to(device, dtype))

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        vectors, units = self._prepared[layer]
        nearest = (hidden @ units.T).argmax(dim=-1)
        return hidden + coeff * vectors[nearest]

    def check_compatible(self, model: nn.Module) -> None:
        self._check_layers(model, {layer: c.shape[-1] for layer, c in self.centroids.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"centroids.{layer}": c for layer, c in self.centroids.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> ClusterAddition:
        return cls(_layer_tensors(tensors, "centroids"), params.get("positions", "all"), meta)

    def summary(self) -> str:
        shapes = ", ".join(f"{layer}:{c.shape[0]}" for layer, c in sorted(self.centroids.items()))
        return f"layers/clusters={{{shapes}}}"


@register_kind
class CosineGatedAddition(LayerHookIntervention):
    """``h + c * v * max(0, |cos(h, v)| - tau)``: steer only tokens already aligned with the direction."""

    kind: ClassVar[str] = "cosine_gated_addition"

    def __init__(
        self,
        vectors: dict[int, torch.Tensor],
        tau: dict[int, float] | float = 0.0,
        positions: str = "all",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.vectors = _float_map(vectors, "CosineGatedAddition", ndim=1)
        taus = tau if isinstance(tau, dict) else {layer: tau for layer in self.vectors}
        self.tau = {int(k): float(v) for k, v in taus.items()}
        missing = sorted(set(self.vectors) - set(self.tau))
        if missing:
            raise InterventionError(f"CosineGatedAddition: no tau for layers {missing}")
        for layer, value in self.tau.items():
            if not 0.0 <= value < 1.0:
                raise InterventionError(
                    f"CosineGatedAddition: tau for layer {layer} must be in [0, 1), got {value}"
                )
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        self._prepared = {
            layer: (v.to(device, dtype), F.normalize(v, dim=0).to(device, dtype))
            for layer, v in self.vectors.items()
        }

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        vector, unit = self._prepared[layer]
        cosine = (hidden @ unit) / hidden.norm(dim=-1).clamp(min=1e-6)
        gate = (cosine.abs() - self.tau[layer]).clamp(min=0.0).unsqueeze(-1)
        return hidden + coeff * gate * vector

    def check_compatible(self, model: nn.Module) -> None:
        self._check_layers(model, {layer: v.numel() for layer, v in self.vectors.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"layer.{layer}": v for layer, v in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions, "tau": {str(k): v for k, v in self.tau.items()}}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> CosineGatedAddition:
        tau = {int(k): float(v) for k, v in params.get("tau", {}).items()}
        return cls(_layer_tensors(tensors, "layer"), tau, params.get("positions", "all"), meta)

    def summary(self) -> str:
        return f"layers={self.layers()}, tau={ {k: round(v, 3) for k, v in self.tau.items()} }"


@register_kind
class DirectionalAblation(LayerHookIntervention):
    """``h - c * (h . u) u`` with unit ``u`` per layer: c = 1 removes the direction (Arditi et al. 2024),
    0 < c < 1 removes part of it, c = 2 reflects it, c < 0 amplifies (re-adds) it."""

    kind: ClassVar[str] = "directional_ablation"

    def __init__(
        self, directions: dict[int, torch.Tensor], positions: str = "all", meta: dict[str, Any] | None = None
    ) -> None:
        raw = _float_map(directions, "DirectionalAblation", ndim=1)
        for layer, vector in raw.items():
            if not bool(vector.norm() > 0):
                raise InterventionError(f"DirectionalAblation: direction for layer {layer} is zero")
        self.directions = {layer: F.normalize(v, dim=0) for layer, v in raw.items()}
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[int, torch.Tensor] = {}

    def layers(self) -> list[int]:
        return sorted(self.directions)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        self._prepared = {layer: u.to(device, dtype) for layer, u in self.directions.items()}

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        unit = self._prepared[layer]
        return hidden - coeff * (hidden @ unit).unsqueeze(-1) * unit

    def check_compatible(self, model: nn.Module) -> None:
        self._check_layers(model, {layer: u.numel() for layer, u in self.directions.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"layer.{layer}": u for layer, u in self.directions.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> DirectionalAblation:
        return cls(_layer_tensors(tensors, "layer"), params.get("positions", "all"), meta)

    def summary(self) -> str:
        return f"layers={self.layers()}"


@register_kind
class ModuleAddition(LayerHookIntervention):
    """Add ``c * v`` to the output of named submodules (e.g. 'model.layers.7.mlp.down_proj')."""

    kind: ClassVar[str] = "module_addition"

    def __init__(
        self, vectors: dict[str, torch.Tensor], positions: str = "all", meta: dict[str, Any] | None = None
    ) -> None:
        if not vectors:
            raise InterventionError("ModuleAddition needs at least one module vector")
        self.vectors = {
            str(name): torch.as_tensor(v).detach().float().reshape(-1) for name, v in vectors.items()
        }
        check_finite(self.vectors, "ModuleAddition")
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[str, torch.Tensor] = {}

    def layers(self) -> list[int]:
        """Decoder-block indices of the target modules: the first integer part of each module name
        ('model.layers.7.mlp.down_proj' -> 7, 'transformer.h.3.attn.c_proj' -> 3)."""
        indices = {int(part) for name in self.vectors for part in name.split(".")[:4] if part.isdigit()}
        return sorted(indices)

    def first_changed_layer(self, model: nn.Module) -> int | None:
        """The lowest block holding a target module (None when one lies outside the blocks)."""
        return first_block(model, list(self.vectors))

    def _modules(self, model: nn.Module) -> dict[str, nn.Module]:
        found = dict(model.named_modules())
        missing = [name for name in self.vectors if name not in found]
        if missing:
            raise InterventionError(f"ModuleAddition: the model has no module(s) {missing[:3]}")
        return {name: found[name] for name in self.vectors}

    def check_compatible(self, model: nn.Module) -> None:
        width = hidden_size(model)
        for name, module in self._modules(model).items():
            out = getattr(module, "out_features", None) or getattr(module, "nf", None) or width
            if self.vectors[name].numel() != out:
                raise InterventionError(
                    f"ModuleAddition: vector for {name!r} has size {self.vectors[name].numel()}, the module outputs {out}"
                )

    @contextlib.contextmanager
    def _installed(self, model: nn.Module, coeff: float | None) -> Iterator[nn.Module]:
        """Forward hooks on the target modules (not whole blocks)."""
        self.check_compatible(model)
        parameter = next(model.parameters())
        self._prepared = {name: v.to(parameter.device, parameter.dtype) for name, v in self.vectors.items()}
        handles = []
        try:
            for name, module in self._modules(model).items():
                handles.append(module.register_forward_hook(self._module_hook(name, coeff)))
            yield model
        finally:
            for handle in handles:
                handle.remove()

    def _module_hook(self, name: str, coeff: float | None) -> Any:
        """The hook of module `name` at `coeff`, or at each row's coefficient when `coeff` is None."""

        def add(rows: torch.Tensor, c: float) -> torch.Tensor:
            return rows + c * self._prepared[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            hidden, original = split_output(output)
            if coeff is None:
                edited = edit_rows(hidden, required_coefficients(hidden.shape[0]), add)
            else:
                edited = add(hidden, coeff)
            mask = position_mask(hidden, self.positions)
            if mask is not None:
                edited = torch.where(mask, edited, hidden)
            return join_output(edited, original)

        return hook

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"module.{name}": v for name, v in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> ModuleAddition:
        vectors = {name.split(".", 1)[1]: t for name, t in tensors.items() if name.startswith("module.")}
        return cls(vectors, params.get("positions", "all"), meta)

    def summary(self) -> str:
        return f"modules={sorted(self.vectors)}"
