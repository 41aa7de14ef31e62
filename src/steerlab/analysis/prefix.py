"""Reuse the base model's hidden states below a variant's first modified layer.

A weight variant changes only decoder layers >= L (its first modified layer), so the hidden states entering
layer L are the base model's for every variant. `recording` stores them during the base (c = 0) evaluation
of an eval, per forward call, keyed by the call's input_ids and attention mask; `reusing` then runs a
variant's evaluation with layers < L passed through and layer L fed the recorded input. A call whose batch
has no record (other rows, another batching) runs the full forward, so the scores are unchanged either way.
Records are bounded in bytes: past the cap, recording stops and nothing is reused for that eval.

Scoring runs a batch's shared head once with a KV cache and the suffixes on top of it
(`steerlab.prefix_kv`). A head pass starts from an empty cache: its record also keeps the keys and values
each layer added, and a reused head pass puts the recorded ones of the skipped layers into the cache, so
the layers >= L of the suffix pass attend to a complete head. A suffix pass's cache is marked transient
(nothing reads it afterwards), so its skipped layers need add nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerlab.block_hooks import block_hidden, forwards_replaced, with_block_hidden

__all__ = ["DEFAULT_MAX_BYTES", "PrefixRecord", "recording", "reusing"]

log = logging.getLogger("steerlab.analysis.prefix")

DEFAULT_MAX_BYTES = 1 << 30


@dataclass
class _Call:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> its input hidden states
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # head pass: layer -> K, V
    cache: Any = None  # the cache object passed to this call (not kept after the call)


@dataclass
class PrefixRecord:
    """The base model's input hidden states of `layers`, for each recorded forward call."""

    layers: frozenset[int]
    max_bytes: int = DEFAULT_MAX_BYTES
    calls: dict[str, _Call] = field(default_factory=dict)
    bytes: int = 0
    overflow: bool = False
    tuple_length: int = 0  # 0: a decoder layer returns a tensor; n: a tuple of n (hidden first)

    @property
    def usable(self) -> bool:
        return bool(self.calls) and not self.overflow

    def find(self, input_ids: Any, attention_mask: Any) -> _Call | None:
        """The recorded call with exactly these inputs, if any."""
        if not isinstance(input_ids, torch.Tensor):
            return None
        found = self.calls.get(_key(input_ids, attention_mask))
        if found is None or not torch.equal(found.input_ids, input_ids):
            return None
        if (found.attention_mask is None) != (attention_mask is None):
            return None
        if found.attention_mask is not None and not torch.equal(found.attention_mask, attention_mask):
            return None
        return found


def _key(input_ids: torch.Tensor, attention_mask: Any) -> str:
    digest = hashlib.sha256(input_ids.detach().cpu().numpy().tobytes())
    digest.update(str(tuple(input_ids.shape)).encode())
    if isinstance(attention_mask, torch.Tensor):
        digest.update(attention_mask.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    return input_ids, kwargs.get("attention_mask", args[1] if len(args) > 1 else None)


def _cache_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The KV cache a model or decoder layer was called with (by keyword or, as GPT-2 blocks get it,
    by position; its name differs across transformers versions)."""
    for value in (*kwargs.values(), *args[1:]):
        if hasattr(value, "get_seq_length") and hasattr(value, "update"):
            return value
    return None


def _starts_empty(cache: Any) -> bool:
    """A cache a head pass fills from nothing (and that later passes will read)."""
    if cache is None or _is_transient(cache) or not hasattr(cache, "layers"):
        return False
    return int(cache.get_seq_length()) == 0


def _is_transient(cache: Any) -> bool:
    from steerlab.prefix_kv import TRANSIENT

    return bool(getattr(cache, TRANSIENT, False))


@contextlib.contextmanager
def recording(model: nn.Module, record: PrefixRecord | None) -> Iterator[None]:
    """Store, for every forward call of `model` in the block, the input hidden states of `record.layers`."""
    from steerlab.models import decoder_layers

    if record is None:
        yield
        return
    layers = decoder_layers(model)
    current: list[_Call] = []

    def start(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids, mask = _inputs(args, kwargs)
        current.clear()
        if isinstance(input_ids, torch.Tensor) and not record.overflow:
            call = _Call(input_ids.detach().clone(), None if mask is None else mask.detach().clone())
            cache = _cache_of(args, kwargs)
            call.cache = cache if _starts_empty(cache) else None
            current.append(call)

    def keep(index: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not current or record.overflow:
                return
            hidden = block_hidden(args, kwargs)
            record.bytes += hidden.numel() * hidden.element_size()
            if record.bytes > record.max_bytes:
                log.info("prefix record over %d bytes: no reuse for this eval", record.max_bytes)
                record.overflow = True
                record.calls.clear()
                current.clear()
                return
            current[0].hidden[index] = hidden.detach().clone()

        return hook

    def returned(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        record.tuple_length = len(output) if isinstance(output, tuple) else 0

    def finish(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if current and set(current[0].hidden) == set(record.layers):
            call = current[0]
            if call.cache is not None:
                _keep_head_kv(call, record)
            record.calls[_key(call.input_ids, call.attention_mask)] = call
        current.clear()

    handles = [
        model.register_forward_pre_hook(start, with_kwargs=True),
        model.register_forward_hook(finish, with_kwargs=True),
    ]
    for index in sorted(record.layers):
        handles.append(layers[index].register_forward_pre_hook(keep(index), with_kwargs=True))
    if record.layers:
        handles.append(layers[min(record.layers)].register_forward_hook(returned))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _keep_head_kv(call: _Call, record: PrefixRecord) -> None:
    """Copy the keys and values a head pass put into its cache for the layers a variant may skip."""
    cache, call.cache = call.cache, None
    for index in range(max(record.layers)):
        layer = cache.layers[index]
        keys, values = layer.keys.detach().clone(), layer.values.detach().clone()
        record.bytes += 2 * keys.numel() * keys.element_size()
        call.kv[index] = (keys, values)


@contextlib.contextmanager
def reusing(model: nn.Module, record: PrefixRecord | None, first_layer: int) -> Iterator[None]:
    """Within the block, a forward call of `model` whose inputs were recorded skips layers < `first_layer`
    and feeds layer `first_layer` its recorded input; any other call runs in full."""
    from steerlab.models import decoder_layers

    if record is None or not record.usable or first_layer <= 0 or first_layer not in record.layers:
        yield
        return
    layers = decoder_layers(model)
    found: list[_Call] = []

    def start(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        found.clear()
        call = record.find(*_inputs(args, kwargs))
        if call is not None:
            found.append(call)

    def finish(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        found.clear()

    def substitute(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if not found:
            return None
        incoming, recorded = block_hidden(args, kwargs), found[0].hidden[first_layer]
        if incoming.shape != recorded.shape:
            raise RuntimeError(
                f"prefix reuse: layer {first_layer} got hidden states {tuple(incoming.shape)}, the record "
                f"has {tuple(recorded.shape)}"
            )
        return with_block_hidden(args, kwargs, recorded)

    def pass_through(index: int, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if not found:
                return original(*args, **kwargs)
            cache = _cache_of(args, kwargs)
            if cache is not None and not _is_transient(cache):  # later passes read this cache
                if index not in found[0].kv:
                    return original(*args, **kwargs)  # no recorded keys and values: fill it for real
                keys, values = found[0].kv[index]
                cache.update(keys, values, index)
            hidden = block_hidden(args, kwargs)
            return (hidden, *([None] * (record.tuple_length - 1))) if record.tuple_length else hidden

        return forward

    handles = [
        model.register_forward_pre_hook(start, with_kwargs=True),
        model.register_forward_hook(finish, with_kwargs=True),
        layers[first_layer].register_forward_pre_hook(substitute, with_kwargs=True),
    ]
    try:
        with forwards_replaced(list(layers)[:first_layer], pass_through):
            yield
    finally:
        for handle in handles:
            handle.remove()
