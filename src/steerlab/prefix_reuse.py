"""Reuse the hidden states below the first decoder block an intervention changes.

An intervention that changes only blocks >= L (a weight delta's lowest block, an activation hook's first
layer) leaves the hidden states entering block L as the base model's at every coefficient. A forward call
whose inputs were seen before can skip blocks < L and feed block L the stored input. Two users:

- `steerlab ablate`: `recording` stores them during the base (c = 0) evaluation of an eval, and `reusing`
  runs each variant's evaluation on them;
- evals and calibration: inside a `reuse_scope` (opened by `steerlab.evals.evaluate` and the calibration
  entry points), `steered` runs the first coefficient's passes in full, storing the input of the
  intervention's first block, and every later coefficient's identical passes skip the blocks below it.

A record is keyed by the call's input ids, attention mask and kind of KV cache (and, for a pass on top of a
shared head, by the head's token ids); a call without a record runs the full forward. A reused call gets
the very states the same call computed, so scores are unchanged, bit for bit on a deterministic device.
Records are bounded in bytes: past the cap, recording stops and nothing is reused.

Calls that take part: plain passes (no cache), passes that fill an empty cache (a shared head, a
generation's prefill: the record keeps the keys and values of the blocks a later call skips, and that call
puts them into its cache), passes that extend a shared head's cache (a group's shared tokens, kept the same
way) and suffix passes on a shared head's cache (`steerlab.prefix_kv`, marked transient and tagged with the
head). A generation's decoding steps depend on what their cache holds, which
no key covers: they always run in full.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerlab.block_hooks import block_hidden, forwards_replaced, with_block_hidden
from steerlab.scoped import scoped

__all__ = [
    "DEFAULT_MAX_BYTES",
    "PrefixRecord",
    "ReuseStore",
    "record_or_reuse",
    "recording",
    "reuse_scope",
    "reusing",
    "steered",
    "steered_rows",
]

log = logging.getLogger("steerlab.prefix_reuse")

DEFAULT_MAX_BYTES = 1 << 30


@dataclass
class _Call:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    # "plain", "fill" (an empty cache), "on <head>" (a suffix pass on a shared head) or "extend <head>" (a
    # pass that adds to a shared head's cache, which a later pass reads)
    kind: str
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> its input hidden states
    # fill and extend passes: layer -> the K, V they added to the cache
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cache: Any = None  # the cache a fill or extend pass was given (not kept after the call)
    offset: int = 0  # the cache's length before the call


@dataclass
class PrefixRecord:
    """The input hidden states of `layers` for each recorded forward call."""

    layers: frozenset[int]
    max_bytes: int = DEFAULT_MAX_BYTES
    calls: dict[str, _Call] = field(default_factory=dict)
    bytes: int = 0
    overflow: bool = False
    tuple_length: int = 0  # 0: a decoder layer returns a tensor; n: a tuple of n (hidden first)

    @property
    def usable(self) -> bool:
        return bool(self.calls) and not self.overflow

    def find(self, input_ids: Any, attention_mask: Any, kind: str) -> _Call | None:
        """The recorded call with exactly these inputs, if any."""
        if not isinstance(input_ids, torch.Tensor):
            return None
        found = self.calls.get(_key(input_ids, attention_mask, kind))
        if found is None or found.kind != kind or not torch.equal(found.input_ids, input_ids):
            return None
        if (found.attention_mask is None) != (attention_mask is None):
            return None
        if found.attention_mask is not None and not torch.equal(found.attention_mask, attention_mask):
            return None
        return found

    def charge(self, tensor: torch.Tensor) -> bool:
        """Count `tensor` against the cap; past it, drop every record and return False."""
        self.bytes += tensor.numel() * tensor.element_size()
        if self.bytes > self.max_bytes and not self.overflow:
            log.info("prefix record over %d bytes: no reuse for this eval", self.max_bytes)
            self.overflow = True
            self.calls.clear()
        return not self.overflow


def _key(input_ids: torch.Tensor, attention_mask: Any, kind: str) -> str:
    digest = hashlib.sha256(input_ids.detach().cpu().numpy().tobytes())
    digest.update(f"{tuple(input_ids.shape)} {kind}".encode())
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


def _is_transient(cache: Any) -> bool:
    from steerlab.prefix_kv import TRANSIENT

    return bool(getattr(cache, TRANSIENT, False))


def _call_kind(cache: Any, kwargs: dict[str, Any]) -> str | None:
    """How a call uses its cache, or None when its hidden states may depend on more than its inputs (a
    decoding step) or it fills a cache the model made itself (``use_cache`` not False)."""
    from steerlab.prefix_kv import HEAD

    if cache is None:
        return "plain" if kwargs.get("use_cache") is False else None
    head = getattr(cache, HEAD, None)
    if _is_transient(cache):
        return None if head is None else f"on {hashlib.sha256(repr(head).encode()).hexdigest()}"
    if hasattr(cache, "layers") and int(cache.get_seq_length()) == 0:
        return "fill"
    if head is not None and hasattr(cache, "layers"):
        return f"extend {hashlib.sha256(repr(head).encode()).hexdigest()}"
    return None  # decoding on a filled cache


@contextlib.contextmanager
def _hooked(model: nn.Module, record: PrefixRecord, skip_below: int | None, learn: bool) -> Iterator[None]:
    """A forward call found in `record` skips blocks < `skip_below` (None: never); with `learn`, any other
    eligible call stores the input hidden states of `record.layers`."""
    from steerlab.models import decoder_layers

    layers = decoder_layers(model)
    found: list[_Call] = []
    current: list[_Call] = []

    def start(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        found.clear()
        current.clear()
        input_ids, mask = _inputs(args, kwargs)
        cache = _cache_of(args, kwargs)
        kind = _call_kind(cache, kwargs)
        if not isinstance(input_ids, torch.Tensor) or kind is None:
            return
        call = record.find(input_ids, mask, kind) if skip_below is not None else None
        if call is not None:
            found.append(call)
        elif learn and not record.overflow:
            mask = None if mask is None else mask.detach().clone()
            kept = kind == "fill" or kind.startswith("extend")
            offset = int(cache.get_seq_length()) if kept else 0
            current.append(
                _Call(input_ids.detach().clone(), mask, kind, cache=cache if kept else None, offset=offset)
            )

    def at_layer(index: int) -> Callable[..., Any]:
        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
            if found and index == skip_below:
                incoming, recorded = block_hidden(args, kwargs), found[0].hidden[index]
                if incoming.shape != recorded.shape:
                    raise RuntimeError(
                        f"prefix reuse: layer {index} got hidden states {tuple(incoming.shape)}, the record "
                        f"has {tuple(recorded.shape)}"
                    )
                return with_block_hidden(args, kwargs, recorded)
            if current and index in record.layers:
                hidden = block_hidden(args, kwargs)
                if record.charge(hidden):
                    current[0].hidden[index] = hidden.detach().clone()
                else:
                    current.clear()
            return None

        return hook

    def returned(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        record.tuple_length = len(output) if isinstance(output, tuple) else 0

    def finish(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if current and set(current[0].hidden) == set(record.layers):
            call = current[0]
            if call.cache is not None:
                _keep_head_kv(call, record)
            if not record.overflow:
                record.calls[_key(call.input_ids, call.attention_mask, call.kind)] = call
        found.clear()
        current.clear()

    def pass_through(index: int, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if not found:
                return original(*args, **kwargs)
            if found[0].kv:  # later passes read this cache: give it the recorded keys and values
                keys, values = found[0].kv[index]
                _cache_of(args, kwargs).update(keys, values, index)
            hidden = block_hidden(args, kwargs)
            return (hidden, *([None] * (record.tuple_length - 1))) if record.tuple_length else hidden

        return forward

    watched = sorted(record.layers | ({skip_below} if skip_below is not None else set()))
    handles = [
        model.register_forward_pre_hook(start, with_kwargs=True),
        model.register_forward_hook(finish, with_kwargs=True),
        layers[min(record.layers)].register_forward_hook(returned),
    ]
    for index in watched:  # first in line: a steering pre-hook on the same block sees the substituted input
        handles.append(
            layers[index].register_forward_pre_hook(at_layer(index), with_kwargs=True, prepend=True)
        )
    skipped = list(layers)[: skip_below or 0]
    try:
        with forwards_replaced(skipped, pass_through) if skipped else contextlib.nullcontext():
            yield
    finally:
        for handle in handles:
            handle.remove()


def _keep_head_kv(call: _Call, record: PrefixRecord) -> None:
    """Copy the keys and values a fill or extend pass put into its cache for the layers a later call may
    skip."""
    cache, call.cache = call.cache, None
    for index in range(max(record.layers)):
        layer = cache.layers[index]
        keys = layer.keys[:, :, call.offset :].detach().clone()
        values = layer.values[:, :, call.offset :].detach().clone()
        if not record.charge(keys) or not record.charge(values):
            return
        call.kv[index] = (keys, values)


_OUTER: contextvars.ContextVar[bool] = contextvars.ContextVar("steerlab_prefix_outer", default=False)
"""True inside `recording` / `reusing`: `steered` then adds no hooks of its own (ablate's evals nest)."""


@contextlib.contextmanager
def recording(model: nn.Module, record: PrefixRecord | None) -> Iterator[None]:
    """Store, for every eligible forward call of `model` in the block, the input hidden states of
    `record.layers`."""
    if record is None or not record.layers:
        yield
        return
    with _hooked(model, record, None, learn=True), scoped(_OUTER, True):
        yield


@contextlib.contextmanager
def reusing(model: nn.Module, record: PrefixRecord | None, first_layer: int) -> Iterator[None]:
    """Within the block, a forward call of `model` whose inputs were recorded skips layers < `first_layer`
    and feeds layer `first_layer` its recorded input; any other call runs in full."""
    if record is None or not record.usable or first_layer <= 0 or first_layer not in record.layers:
        yield
        return
    with _hooked(model, record, first_layer, learn=False), scoped(_OUTER, True):
        yield


def record_or_reuse(
    model: nn.Module, record: PrefixRecord, layer: int
) -> contextlib.AbstractContextManager[None]:
    """Within the block, a call recorded before skips blocks < `layer`; any other eligible call runs in
    full and is recorded. Only for a model that is the base model below block `layer` throughout."""
    if layer <= 0 or record.layers != frozenset({layer}):
        raise ValueError(
            f"record_or_reuse needs a record of exactly layer {layer} (> 0), got {set(record.layers)}"
        )
    return _hooked(model, record, layer, learn=True)


# ------------------------------------------------------------------------------------ evals and calibration


@dataclass
class ReuseStore:
    """The records of one reuse scope: one per model and block, each up to `max_bytes`."""

    max_bytes: int = DEFAULT_MAX_BYTES
    records: dict[tuple[int, int], PrefixRecord] = field(default_factory=dict)  # (id(model), layer) -> record


_SCOPE: contextvars.ContextVar[ReuseStore | None] = contextvars.ContextVar(
    "steerlab_prefix_scope", default=None
)


@contextlib.contextmanager
def reuse_scope(store: ReuseStore | None = None) -> Iterator[None]:
    """Within the block, `steered` shares each intervention's states below its first block across
    coefficients, in `store` (pass the same one to several blocks to share across them; default: a new
    one). An enclosing scope is kept."""
    if _SCOPE.get() is not None:
        yield
        return
    with scoped(_SCOPE, store if store is not None else ReuseStore()):
        yield


def _reuse(model: nn.Module, intervention: Any) -> contextlib.AbstractContextManager[None]:
    scope = None if _OUTER.get() else _SCOPE.get()
    layer = None if scope is None else intervention.first_changed_layer(model)
    if scope is None or layer is None or layer <= 0:
        return contextlib.nullcontext()
    key = (id(model), layer)
    record = scope.records.setdefault(key, PrefixRecord(frozenset({layer}), scope.max_bytes))
    return record_or_reuse(model, record, layer)


@contextlib.contextmanager
def steered(model: nn.Module, intervention: Any, coeff: float) -> Iterator[nn.Module]:
    """``intervention.apply(model, coeff)`` (the bare model when `intervention` is None), reusing the
    states below its first block inside a `reuse_scope`."""
    if intervention is None:
        yield model
        return
    with intervention.apply(model, coeff), _reuse(model, intervention):
        yield model


@contextlib.contextmanager
def steered_rows(model: nn.Module, intervention: Any, coeffs: Sequence[float]) -> Iterator[nn.Module]:
    """``intervention.apply_rows(model, coeffs)`` with the same reuse as `steered`."""
    with intervention.apply_rows(model, coeffs), _reuse(model, intervention):
        yield model
