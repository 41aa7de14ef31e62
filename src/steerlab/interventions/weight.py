"""Weight deltas: set W = W0 + c * dW in place and restore the original tensors exactly on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_file
from torch import nn

from steerlab.interventions.base import (
    Intervention,
    InterventionError,
    check_coefficient,
    check_finite,
    register_kind,
)
from steerlab.models import first_block
from steerlab.placement import OffloadedWeight, offloaded_weight, refuse_quantized

ADAPTERS_FILE = "adapters.safetensors"


@dataclass(frozen=True)
class LowRankDelta:
    """dW = up @ down with up: [out, r] and down: [r, in]; holds r*(out+in) numbers instead of out*in."""

    up: torch.Tensor
    down: torch.Tensor

    def __post_init__(self) -> None:
        if self.up.dim() != 2 or self.down.dim() != 2 or self.up.shape[1] != self.down.shape[0]:
            raise InterventionError(
                f"low-rank factors must be up [out, r] and down [r, in]; got {tuple(self.up.shape)} and "
                f"{tuple(self.down.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.up.shape[0], self.down.shape[1])

    @property
    def rank(self) -> int:
        return int(self.up.shape[1])

    def dense(self) -> torch.Tensor:
        return self.up @ self.down

    def numel(self) -> int:
        return self.up.numel() + self.down.numel()


Delta = torch.Tensor | LowRankDelta


@register_kind
class WeightDelta(Intervention):
    """Per-parameter deltas (full tensors or low-rank factors) added to the weights with a coefficient.

    ``apply`` replaces each touched parameter's storage with ``W0 + c * dW`` and puts the very same
    original tensor back on exit, so the state dict is bit-identical afterwards, also after an exception.
    """

    kind: ClassVar[str] = "weight_delta"

    def __init__(
        self,
        deltas: dict[str, Delta],
        meta: dict[str, Any] | None = None,
        adapters: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if not deltas:
            raise InterventionError("WeightDelta needs at least one parameter delta")
        self.deltas: dict[str, Delta] = {}
        for name, delta in deltas.items():
            if isinstance(delta, LowRankDelta):
                delta = LowRankDelta(delta.up.detach().float(), delta.down.detach().float())
            else:
                delta = torch.as_tensor(delta).detach().float()
            self.deltas[name] = delta
        check_finite(self.tensors(), "WeightDelta")
        self.meta = dict(meta or {})
        # the trained adapter parameters of both poles (optional; saved as adapters.safetensors for
        # `steerlab ablate`'s family-native splits)
        self.adapters: dict[str, torch.Tensor] = dict(adapters or {})

    @contextlib.contextmanager
    def apply(self, model: nn.Module, coeff: float) -> Iterator[nn.Module]:
        coeff = check_coefficient(coeff, self.kind)
        if coeff == 0:
            yield model
            return
        parameters = self._resolve(model)
        refuse_quantized(parameters)
        originals: dict[str, torch.Tensor] = {}
        offloaded: list[OffloadedWeight] = []
        try:
            with torch.no_grad():
                for name, delta in self.deltas.items():
                    parameter = parameters[name]
                    if parameter.device.type == "meta":  # accelerate offload: edit the weight its hook loads
                        slot = _offload_slot(model, name)
                        offloaded.append(slot)
                        slot.replace(_added(slot.read(), delta, float(coeff)))
                        continue
                    original = parameter.data
                    originals[name] = original
                    parameter.data = _added(original, delta, float(coeff))
            yield model
        finally:
            for name, original in originals.items():
                parameters[name].data = original
            for slot in offloaded:
                slot.restore()

    def _resolve(self, model: nn.Module) -> dict[str, nn.Parameter]:
        named = dict(model.named_parameters(remove_duplicate=False))
        missing = [name for name in self.deltas if name not in named]
        if missing:
            raise InterventionError(
                f"the model has no parameter(s) {missing[:5]} (of {len(missing)}); was this delta made for another model?"
            )
        for name, delta in self.deltas.items():
            expected, actual = tuple(delta.shape), tuple(named[name].shape)
            if expected != actual:
                raise InterventionError(
                    f"parameter {name!r}: the delta has shape {expected}, the model has {actual}"
                )
        return {name: named[name] for name in self.deltas}

    def check_compatible(self, model: nn.Module) -> None:
        self._resolve(model)

    def first_changed_layer(self, model: nn.Module) -> int | None:
        """The lowest block holding a changed parameter (None when one lies outside the blocks)."""
        return first_block(model, list(self.deltas))

    def tensors(self) -> dict[str, torch.Tensor]:
        flat: dict[str, torch.Tensor] = {}
        for name, delta in self.deltas.items():
            if isinstance(delta, LowRankDelta):
                flat[f"{name}::up"] = delta.up
                flat[f"{name}::down"] = delta.down
            else:
                flat[name] = delta
        return flat

    def params(self) -> dict[str, Any]:
        return {"low_rank": sorted(n for n, d in self.deltas.items() if isinstance(d, LowRankDelta))}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> WeightDelta:
        deltas: dict[str, Delta] = {}
        for name in params.get("low_rank", []):
            deltas[name] = LowRankDelta(tensors[f"{name}::up"], tensors[f"{name}::down"])
        for name, tensor in tensors.items():
            if "::" not in name:
                deltas[name] = tensor
        return cls(deltas, meta=meta)

    def write_extras(self, directory: Path) -> None:
        if self.adapters:
            tensors = {k: v.detach().to("cpu").float().contiguous() for k, v in self.adapters.items()}
            save_file(tensors, str(directory / ADAPTERS_FILE))

    def read_extras(self, directory: Path) -> None:
        path = directory / ADAPTERS_FILE
        if path.is_file():
            from safetensors.torch import load_file

            self.adapters = load_file(str(path))

    def dense(self, name: str) -> torch.Tensor:
        delta = self.deltas[name]
        return delta.dense() if isinstance(delta, LowRankDelta) else delta

    def bytes_held(self) -> int:
        return sum(d.numel() * 4 for d in self.deltas.values())

    def bytes_dense(self) -> int:
        return sum(int(torch.Size(d.shape).numel()) * 4 for d in self.deltas.values())

    def norm(self) -> float:
        return float(sum(float(self.dense(n).pow(2).sum()) for n in self.deltas) ** 0.5)

    def scaled(self, factor: float) -> WeightDelta:
        scaled: dict[str, Delta] = {}
        for name, delta in self.deltas.items():
            scaled[name] = (
                LowRankDelta(delta.up * factor, delta.down)
                if isinstance(delta, LowRankDelta)
                else delta * factor
            )
        return WeightDelta(scaled, meta=dict(self.meta))

    def summary(self) -> str:
        low = sum(isinstance(d, LowRankDelta) for d in self.deltas.values())
        return f"params={len(self.deltas)} (low-rank {low}), norm={self.norm():.3f}"


def _offload_slot(model: nn.Module, name: str) -> OffloadedWeight:
    slot = offloaded_weight(model, name)
    if slot is None:
        raise InterventionError(
            f"parameter {name!r} is on the meta device and no accelerate offload hook holds its weight; "
            "load the model with its weights (device_map entries of a GPU, 'cpu' or 'disk')"
        )
    return slot


def _added(original: torch.Tensor, delta: Delta, coeff: float) -> torch.Tensor:
    if isinstance(delta, LowRankDelta):
        up = delta.up.to(device=original.device, dtype=original.dtype)
        down = delta.down.to(device=original.device, dtype=original.dtype)
        return torch.addmm(original, up, down, alpha=coeff)
    return torch.add(original, delta.to(device=original.device, dtype=original.dtype), alpha=coeff)
