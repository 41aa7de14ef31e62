"""Activation interventions: edit the residual stream at decoder-block outputs through forward hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from steerlab.interventions.base import (
    Intervention,
    InterventionError,
    check_coefficient,
    check_finite,
    register_kind,
)
from steerlab.models import decoder_layers, hidden_size
from steerlab.placement import follow_device
from steerlab.positions import position_mask
from steerlab.row_coefficients import edit_rows, required_coefficients, row_coefficients

POSITIONS = ("all", "prompt", "generated")


def split_output(output: Any) -> tuple[torch.Tensor, Any]:
    if isinstance(output, torch.Tensor):
        return output, None
    return output[0], output


def join_output(hidden: torch.Tensor, original: Any) -> Any:
    if original is None:
        return hidden
    if isinstance(original, tuple):
        return (hidden, *original[1:])
    original[0] = hidden
    return original


class LayerHookIntervention(Intervention):
    """Base for interventions that rewrite hidden states after some decoder blocks.

    Subclasses implement ``edit(layer, hidden, coeff) -> hidden``; positions restrict where the edit
    lands ('all', 'prompt' or 'generated' tokens). Hooks are removed on exit, also when the block raises.
    """

    kind: ClassVar[str] = ""
    positions: str = "all"

    def layers(self) -> list[int]:
        raise NotImplementedError

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        raise NotImplementedError

    def first_changed_layer(self, model: nn.Module) -> int | None:
        """The first hooked block (its output is edited; the blocks below it run as in the base model)."""
        return min(self.layers(), default=None)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        """Move tensors to the model's device/dtype once per `apply` (not per forward)."""

    def _check_positions(self) -> None:
        if self.positions not in POSITIONS:
            raise InterventionError(f"positions must be one of {POSITIONS}, got {self.positions!r}")

    @contextlib.contextmanager
    def apply(self, model: nn.Module, coeff: float) -> Iterator[nn.Module]:
        coeff = check_coefficient(coeff, self.kind)
        if coeff == 0:
            yield model
            return
        with self._installed(model, float(coeff)):
            yield model

    per_row_coefficients: ClassVar[bool] = True

    @contextlib.contextmanager
    def apply_rows(self, model: nn.Module, coeffs: Sequence[float]) -> Iterator[nn.Module]:
        """Each input row at its own coefficient: the edit runs once per distinct coefficient per layer."""
        values = [check_coefficient(c, self.kind) for c in coeffs]
        with row_coefficients(values):
            if not any(values):
                yield model
                return
            with self._installed(model, None):
                yield model

    def _installed(
        self, model: nn.Module, coeff: float | None
    ) -> contextlib.AbstractContextManager[nn.Module]:
        """The hooks that steer at `coeff`, or each row at its own coefficient when `coeff` is None."""
        return self._hooked(model, lambda layer: self._make_hook(layer, coeff))

    @contextlib.contextmanager
    def _hooked(self, model: nn.Module, make_hook: Callable[[int], Any]) -> Iterator[nn.Module]:
        self.check_compatible(model)
        blocks = decoder_layers(model)
        parameter = next(model.parameters())
        self.prepare(parameter.device, parameter.dtype)
        handles = []
        try:
            for layer in self.layers():
                handles.append(blocks[layer].register_forward_hook(make_hook(layer)))
            yield model
        finally:
            for handle in handles:
                handle.remove()

    def _make_hook(self, layer: int, coeff: float | None) -> Any:
        """The forward hook of `layer` at `coeff`, or at each row's coefficient when `coeff` is None."""

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            hidden, original = split_output(output)
            follow_device(self, layer, hidden.device)
            if coeff is None:
                coeffs = required_coefficients(hidden.shape[0])
                edited = edit_rows(hidden, coeffs, lambda rows, c: self.edit(layer, rows, c))
            else:
                edited = self.edit(layer, hidden, coeff)
            mask = position_mask(hidden, self.positions)
            if mask is not None:
                edited = torch.where(mask, edited, hidden)
            return join_output(edited, original)

        return hook

    def _check_layers(self, model: nn.Module, dims: dict[int, int]) -> None:
        n_layers, width = len(decoder_layers(model)), hidden_size(model)
        for layer, dim in dims.items():
            if not 0 <= layer < n_layers:
                raise InterventionError(f"layer {layer} is out of range for a model with {n_layers} layers")
            if dim != width:
                raise InterventionError(
                    f"layer {layer}: vector has size {dim}, the model's hidden size is {width} "
                    "(was this intervention made for another model?)"
                )


@register_kind
class ActivationAddition(LayerHookIntervention):
    """Add ``coeff * v_l`` to the output of each decoder block ``l`` (CAA / RepE style steering)."""

    kind: ClassVar[str] = "activation_addition"

    def __init__(
        self, vectors: dict[int, torch.Tensor], positions: str = "all", meta: dict[str, Any] | None = None
    ) -> None:
        if not vectors:
            raise InterventionError("ActivationAddition needs at least one layer vector")
        self.vectors = {
            int(layer): torch.as_tensor(v).detach().float().reshape(-1) for layer, v in vectors.items()
        }
        check_finite({f"layer.{k}": v for k, v in self.vectors.items()}, "ActivationAddition")
        self.positions = positions
        self._check_positions()
        self.meta = dict(meta or {})
        self._prepared: dict[int, torch.Tensor] = {}

    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        self._prepared = {layer: v.to(device=device, dtype=dtype) for layer, v in self.vectors.items()}

    def edit(self, layer: int, hidden: torch.Tensor, coeff: float) -> torch.Tensor:
        return torch.add(hidden, self._prepared[layer], alpha=coeff)  # one fused op per layer and step

    def check_compatible(self, model: nn.Module) -> None:
        self._check_layers(model, {layer: v.numel() for layer, v in self.vectors.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"layer.{layer}": v for layer, v in self.vectors.items()}

    def params(self) -> dict[str, Any]:
        return {"positions": self.positions}

    @classmethod
    def from_parts(
        cls, tensors: dict[str, torch.Tensor], params: dict[str, Any], meta: dict[str, Any]
    ) -> ActivationAddition:
        vectors = {int(name.split(".", 1)[1]): t for name, t in tensors.items() if name.startswith("layer.")}
        return cls(vectors, positions=params.get("positions", "all"), meta=meta)

    def __add__(self, other: ActivationAddition) -> ActivationAddition:
        """Compose two additions by summing their per-layer vectors."""
        if self.positions != other.positions:
            raise InterventionError(
                "cannot sum additions with different positions; apply them together instead"
            )
        summed = dict(self.vectors)
        for layer, vector in other.vectors.items():
            summed[layer] = summed[layer] + vector if layer in summed else vector
        return ActivationAddition(
            summed, positions=self.positions, meta={"composed_of": [self.meta, other.meta]}
        )

    def summary(self) -> str:
        norms = ", ".join(f"{layer}:{v.norm():.2f}" for layer, v in sorted(self.vectors.items()))
        return f"layers/norms={{{norms}}}, positions={self.positions!r}"
