"""Frozen-prefix reuse for adapter training: the decoder blocks below the first adapted one run once.

An adapter changes only the blocks that hold its target modules, so the hidden state entering the first
adapted block is the base model's and does not depend on the adapter: it is the same at every step, in
every epoch and in the validation passes. `compute_prefix` runs the blocks below it once per example (no
grad, rows grouped by length, the forward stopped at that block) and keeps each row's unpadded hidden
states; `FrozenPrefix.reusing` then runs training forwards with those blocks passed through and the first
adapted block fed the stored states, rebuilt with the batch's left padding (zeros at padded positions:
the attention mask hides them from every real position, as in the full forward).

The same idea as `steerlab.prefix_reuse` (hidden-state reuse below a variant's first modified layer),
keyed per example rather than per recorded forward call, because training batches are reshuffled every
epoch. Losses match the full forward to float round-off (the stored states were computed in another
batch); `FrozenPrefix.check` compares both on a few rows and `compute_prefix` returns None (the caller
keeps the full forward) when the model cannot be split this way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerlab.block_hooks import block_hidden, forwards_replaced, with_block_hidden
from steerlab.models import decoder_layers
from steerlab.scoring import pad_left

__all__ = ["FrozenPrefix", "compute_prefix"]

log = logging.getLogger("steerlab.methods.weight_prefix")

Ids = tuple[int, ...]


class _Stop(Exception):
    """Raised by the hook at the first adapted block: the rest of the prefix forward is not needed."""


def model_inputs(rows: Sequence[Ids], pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded input ids, attention mask and position ids (counting real tokens only) of `rows`."""
    ids, mask = pad_left(rows, pad, device)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


@dataclass
class FrozenPrefix:
    """The base model's hidden states entering block `layer`, per token sequence (unpadded, no grad)."""

    layer: int
    hidden: dict[Ids, torch.Tensor]
    tuple_length: int  # 0: a decoder block returns a tensor; n: a tuple of n (hidden first)
    _pending: list[torch.Tensor] = field(default_factory=list)

    def feed(self, rows: Sequence[Ids], width: int) -> None:
        """Make the next forward use these rows' stored states, left-padded to `width`."""
        first = self.hidden[rows[0]]
        batch = first.new_zeros((len(rows), width, first.shape[-1]))
        for number, row in enumerate(rows):
            batch[number, width - len(row) :] = self.hidden[row]
        self._pending[:] = [batch]

    @contextlib.contextmanager
    def reusing(self, model: nn.Module) -> Iterator[None]:
        """Within the block, each forward of `model` that was `feed`-ed skips blocks < `layer`."""
        layers = decoder_layers(model)
        active: list[torch.Tensor] = []

        def start(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            active[:] = self._pending
            self._pending.clear()

        def finish(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            active.clear()

        def substitute(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
            if not active:
                return None
            incoming, stored = block_hidden(args, kwargs), active[0]
            if incoming.shape != stored.shape:
                raise RuntimeError(
                    f"frozen prefix: block {self.layer} got hidden states {tuple(incoming.shape)}, the stored "
                    f"ones are {tuple(stored.shape)}"
                )
            return with_block_hidden(args, kwargs, stored.to(incoming.dtype))

        def pass_through(original: Callable[..., Any]) -> Callable[..., Any]:
            def forward(*args: Any, **kwargs: Any) -> Any:
                if not active:
                    return original(*args, **kwargs)
                hidden = block_hidden(args, kwargs)
                return (hidden, *([None] * (self.tuple_length - 1))) if self.tuple_length else hidden

            return forward

        handles = [
            model.register_forward_pre_hook(start, with_kwargs=True),
            model.register_forward_hook(finish, with_kwargs=True),
            layers[self.layer].register_forward_pre_hook(substitute, with_kwargs=True),
        ]
        try:
            with forwards_replaced(list(layers)[: self.layer], lambda _, forward: pass_through(forward)):
                yield
        finally:
            for handle in handles:
                handle.remove()
            self._pending.clear()

    def check(self, model: nn.Module, rows: Sequence[Ids], pad: int, device: torch.device) -> bool:
        """True when the logits of `rows` with reuse match the full forward's (float round-off)."""
        inputs = model_inputs(rows, pad, device)
        with torch.no_grad():
            full = model(**inputs, use_cache=False).logits
            with self.reusing(model):
                self.feed(rows, inputs["input_ids"].shape[1])
                reused = model(**inputs, use_cache=False).logits
        mask = inputs["attention_mask"].bool()
        close = logits_agree(full[mask], reused[mask])
        if not close:
            log.warning(
                "frozen prefix: logits differ from the full forward (max |diff| %.3g); training without reuse",
                float((full[mask].float() - reused[mask].float()).abs().max()),
            )
        return close


def logits_agree(full: torch.Tensor, reused: torch.Tensor) -> bool:
    """Whether two computations of the same logits agree to the round-off of their dtype: 1e-3 (relative,
    and of the largest logit) in float32, 5e-2 in half precision, where 30 blocks in another batch shape
    move bf16 logits by about 0.6 (seen on an H100)."""
    tolerance = 1e-3 if full.dtype == torch.float32 and reused.dtype == torch.float32 else 5e-2
    full, reused = full.float(), reused.float()
    return bool(torch.allclose(full, reused, rtol=tolerance, atol=tolerance * float(full.abs().max())))


def compute_prefix(
    model: nn.Module,
    sequences: Sequence[Ids],
    layer: int | None,
    batch_size: int,
    pad: int,
    device: torch.device,
) -> FrozenPrefix | None:
    """Hidden states entering block `layer` for every distinct sequence, or None when there is nothing
    to skip (`layer` 0 or unknown) or the model's blocks cannot be hooked this way."""
    if layer is None or layer <= 0 or not sequences:
        return None
    try:
        layers = decoder_layers(model)
    except ValueError:
        return None
    if layer >= len(layers):
        return None
    distinct = sorted(set(sequences), key=len)
    stored: dict[Ids, torch.Tensor] = {}
    captured: list[torch.Tensor] = []
    shape: list[int] = []

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured[:] = [block_hidden(args, kwargs).detach()]
        raise _Stop

    def returned(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        shape[:] = [len(output) if isinstance(output, tuple) else 0]

    handles = [
        layers[layer].register_forward_pre_hook(capture, with_kwargs=True),
        layers[layer - 1].register_forward_hook(returned),
    ]
    try:
        with torch.no_grad():
            for start in range(0, len(distinct), batch_size):
                rows = distinct[start : start + batch_size]
                inputs = model_inputs(rows, pad, device)
                captured.clear()
                with contextlib.suppress(_Stop):
                    model(**inputs, use_cache=False)
                if not captured:
                    log.info("frozen prefix: block %d was never reached; training without reuse", layer)
                    return None
                width = inputs["input_ids"].shape[1]
                for number, row in enumerate(rows):
                    stored[row] = captured[0][number, width - len(row) :].clone()
    finally:
        for handle in handles:
            handle.remove()
    return FrozenPrefix(layer, stored, shape[0] if shape else 0)
