"""Models that need more than one device: device maps, quantized loading, and batches that fit memory.

`placement_kwargs` turns ``device_map`` / ``quantization`` into `from_pretrained` arguments (accelerate
places each layer; bitsandbytes quantizes). Steering follows the placement: activation vectors move to
the device of the hidden state they edit, weight deltas to each parameter's device, and a weight delta on
a quantized weight is refused (`refuse_quantized`) because adding to packed int8/4-bit storage cannot be
undone exactly. `fit_batch_size` sizes batches from free accelerator memory; `halving_on_oom` halves a
batch and retries when a CUDA out-of-memory error happens instead of failing a long sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "QUANTIZATIONS",
    "fit_batch_size",
    "halving_on_oom",
    "is_oom",
    "is_quantized",
    "OffloadedWeight",
    "offloaded_weight",
    "placement_kwargs",
    "refuse_quantized",
]

log = logging.getLogger("steerlab.placement")

QUANTIZATIONS = ("8bit", "4bit")
T = TypeVar("T")
R = TypeVar("R")


class QuantizedWeightError(ValueError):
    """A weight delta was asked to edit a quantized weight."""


def placement_kwargs(
    device_map: str | dict[str, Any] | None,
    quantization: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """`from_pretrained` keyword arguments for a device map and/or quantization ({} for neither)."""
    kwargs: dict[str, Any] = {}
    if quantization is not None:
        if quantization not in QUANTIZATIONS:
            raise ValueError(
                f"quantization must be one of {list(QUANTIZATIONS)} or None, got {quantization!r}"
            )
        if not torch.cuda.is_available():
            raise ValueError(
                f"quantization={quantization!r} needs a CUDA GPU (bitsandbytes); load without quantization on CPU"
            )
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as error:  # pragma: no cover
            raise ValueError("quantization needs transformers' BitsAndBytesConfig") from error
        try:
            import bitsandbytes  # type: ignore[import-not-found,unused-ignore]  # noqa: F401  (optional package)
        except ImportError:
            raise ValueError(
                f"quantization={quantization!r} needs bitsandbytes: pip install bitsandbytes"
            ) from None
        if quantization == "8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_compute_dtype=dtype
            )
        kwargs["device_map"] = device_map if device_map is not None else {"": device.index or 0}
    elif device_map is not None:
        if isinstance(device_map, str) and device_map not in (
            "auto",
            "balanced",
            "balanced_low_0",
            "sequential",
        ):
            raise ValueError(
                f"device_map {device_map!r}: expected auto, balanced, balanced_low_0, sequential or a module -> device table"
            )
        kwargs["device_map"] = device_map
    return kwargs


def is_quantized(parameter: torch.Tensor) -> bool:
    """True for bitsandbytes' packed weights (Int8Params, Params4bit) and any integer-typed weight."""
    if type(parameter).__name__ in ("Int8Params", "Params4bit"):
        return True
    return not (parameter.dtype.is_floating_point or parameter.dtype.is_complex)


def refuse_quantized(parameters: Mapping[str, torch.Tensor]) -> None:
    """Raise a clear error when any parameter a weight delta would edit is quantized."""
    quantized = [name for name, parameter in parameters.items() if is_quantized(parameter)]
    if quantized:
        raise QuantizedWeightError(
            f"weight steering cannot edit quantized weights ({quantized[0]!r} and {len(quantized) - 1} more are "
            f"{type(parameters[quantized[0]]).__name__}); load the model without quantization (bf16 with "
            "--device-map auto spreads it over GPUs), or use an activation or prompt method, which work on "
            "quantized models"
        )


class OffloadedWeight:
    """Where accelerate keeps an offloaded parameter (CPU offload beside a GPU, or disk): the parameter
    itself is on the meta device and its hook loads ``loader[key]`` onto the execution device at each
    forward. A weight delta swaps that entry and puts the very same tensor back (or removes its own entry
    where the weight was only on disk), so the restore is exact."""

    def __init__(self, loader: Any, key: str) -> None:
        self.loader, self.key = loader, key
        self._had: bool | None = None
        self._previous: Any = None

    def read(self) -> torch.Tensor:
        return self.loader[self.key]

    def replace(self, tensor: torch.Tensor) -> None:
        state: dict[str, Any] = self.loader.state_dict
        if self._had is None:
            self._had, self._previous = self.key in state, state.get(self.key)
        state[self.key] = tensor

    def restore(self) -> None:
        state: dict[str, Any] = self.loader.state_dict
        if self._had:
            state[self.key] = self._previous
        elif self._had is False:
            state.pop(self.key, None)
        self._had = self._previous = None


def offloaded_weight(model: nn.Module, name: str) -> OffloadedWeight | None:
    """The offload slot of parameter `name` (its module's or an ancestor's accelerate hook), or None."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        module = model.get_submodule(".".join(parts[:cut]))
        hook = getattr(module, "_hf_hook", None)
        for candidate in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            weights = getattr(candidate, "weights_map", None)
            if not getattr(candidate, "offload", False) or weights is None:
                continue
            loader = getattr(weights, "dataset", weights)
            if isinstance(getattr(loader, "state_dict", None), dict):
                return OffloadedWeight(loader, getattr(weights, "prefix", "") + ".".join(parts[cut:]))
    return None


def first_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (cpu for a parameterless module)."""
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------- batch sizes


def free_accelerator_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device, or None on CPU/MPS (where the caller keeps its default)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def fit_batch_size(
    default: int, device: torch.device, bytes_per_row: int, *, ceiling: int = 512, free: int | None = None
) -> int:
    """A batch size that uses about half the free accelerator memory, at least `default`'s order.

    On CPU (no free-memory reading) `default` is returned unchanged, so CPU results never change.
    """
    free = free if free is not None else free_accelerator_bytes(device)
    if free is None or bytes_per_row <= 0:
        return default
    fitted = int((free // 2) // bytes_per_row)
    return max(1, min(ceiling, max(fitted, 1)))


def is_oom(error: BaseException) -> bool:
    """A CUDA (or MPS) out-of-memory error."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def halving_on_oom(
    run: Callable[[Sequence[T]], list[R]], items: Sequence[T], batch_size: int, *, min_batch: int = 1
) -> list[R]:
    """`run` over `items` in batches; an out-of-memory error halves the batch and retries that batch.

    Results are in input order; a batch of `min_batch` that still runs out of memory re-raises.
    """
    results: list[R] = []
    size, start = max(1, batch_size), 0
    while start < len(items):
        batch = items[start : start + size]
        try:
            results.extend(run(batch))
        except Exception as error:
            if not is_oom(error) or size <= min_batch:
                raise
            size = max(min_batch, size // 2)
            log.warning("out of memory on a batch of %d; retrying with %d", len(batch), size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += len(batch)
    return results


def _moved(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device)
    if isinstance(value, tuple):
        return tuple(_moved(v, device) for v in value)
    return value


def follow_device(intervention: Any, layer: int, device: torch.device) -> None:
    """Move an activation intervention's prepared tensors for `layer` to `device` (the hidden state's), once.

    A model sharded with a device map runs each block on its own device; a vector prepared on the first
    parameter's device would otherwise meet a hidden state on another GPU. On one device this is a no-op.
    """
    prepared = getattr(intervention, "_prepared", None)
    if not isinstance(prepared, dict) or layer not in prepared:
        return
    value = prepared[layer]
    first = value[0] if isinstance(value, tuple) else value
    if isinstance(first, torch.Tensor) and first.device != device:
        prepared[layer] = _moved(value, device)
