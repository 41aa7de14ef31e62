"""Run the tokens every prompt of a batch starts with once, and the rest of each prompt on top of its KV cache.

An eval's prompts share a chat-template head: SmolLM2's default system prompt and the user-turn marker are
24 of sycophancy-claims' 57 tokens per prompt (31 with the claim template's opening words), a quarter of
tiny-mfv's and ai-risk's. Scoring a batch runs that head once (batch 1, under whatever intervention is
applied, since the head's keys and values depend on the weights and hooks in force), repeats its KV cache
over the batch, and runs only the suffixes, left-padded after the head with position ids that continue
from it. Attention and every position-wise edit see the same inputs as in one full pass, so scores agree
with the unsplit forward to float round-off (`tests/test_prefix_kv.py`). Rows steered at different coefficients
(:mod:`steerlab.row_coefficients`) get the head run once per distinct coefficient, as one small batch.

Anything this cannot handle (a model without a KV-cache argument, an older transformers without
per-layer caches, a cache with sliding-window or other special layers) runs the plain full forward.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from steerlab.row_coefficients import HeadGroups, batch_rows, head_groups

__all__ = ["HEAD", "MIN_PREFIX", "PrefixCache", "common_prefix_length", "with_head"]

MIN_PREFIX = 8
"""Shorter shared heads are not worth a separate forward pass."""

TRANSIENT = "_steerlab_transient"
"""Attribute set on a suffix pass's cache: nothing reads it after the pass (see steerlab.prefix_reuse)."""

HEAD = "_steerlab_head"
"""Attribute set on a suffix pass's cache: the token ids of the head it holds, so a record of the pass
(steerlab.prefix_reuse) is told apart from the same suffixes on another head."""


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving at least one token of each row to run as its suffix."""
    if len(rows) < 2:
        return 0
    shortest = min(len(row) for row in rows)
    first = rows[0]
    length = 0
    while length < shortest - 1 and all(row[length] == first[length] for row in rows):
        length += 1
    return length


def _plain_dynamic_cache(model: nn.Module) -> Any | None:
    """An empty DynamicCache whose layers are all plain full-attention layers, else None."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - transformers without per-layer caches
        return None
    try:
        cache = DynamicCache(config=getattr(model, "config", None))
    except Exception:  # noqa: BLE001 - a config DynamicCache cannot read: no sharing
        return None
    layers = getattr(cache, "layers", None)
    if not isinstance(layers, list) or not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return cache


class PrefixCache:
    """The KV caches of shared heads within one scoring call, keyed by the head's token ids.

    Valid only while the model's weights and hooks stay as they were when the head ran: create one per
    scoring call, inside the intervention's ``apply`` block.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.device = device
        from steerlab.scoring import cache_argument

        self.argument = cache_argument(model)
        self.caches: dict[tuple[tuple[int, ...], tuple[float, ...]], Any] = {}

    def for_batch(self, head: Sequence[int], rows: int) -> Any | None:
        """A fresh cache holding `head`'s keys and values repeated for `rows` rows, or None (no sharing)."""
        if self.argument is None or len(head) < MIN_PREFIX:
            return None
        groups = head_groups(rows)  # rows steered at different coefficients (apply_rows) need their own head
        key = (tuple(head), groups.key if groups is not None else ())
        if key not in self.caches:
            self.caches[key] = self._run_head(key[0]) if groups is None else self._run_heads(key[0], groups)
        cached = self.caches[key]
        if cached is None:
            return None
        cache = copy.deepcopy(cached)
        if groups is None:
            cache.batch_repeat_interleave(rows)
        else:
            cache.batch_select_indices(torch.tensor(groups.assignment, dtype=torch.long, device=self.device))
        setattr(cache, TRANSIENT, True)
        setattr(cache, HEAD, key[0])
        return cache

    def _run_head(self, head: tuple[int, ...]) -> Any | None:
        return self._run_heads(head, None)

    def _run_heads(self, head: tuple[int, ...], groups: HeadGroups | None) -> Any | None:
        """The head's cache at batch 1, or at one row per coefficient group (declared as those rows)."""
        cache = _plain_dynamic_cache(self.model)
        if cache is None or self.argument is None:
            return None
        from steerlab.scoring import forward_logits

        count = 1 if groups is None else len(groups.rows)
        input_ids = torch.tensor([head] * count, dtype=torch.long, device=self.device)
        with batch_rows(groups.rows) if groups is not None else contextlib.nullcontext():
            forward_logits(self.model, input_ids, torch.ones_like(input_ids), last_only=True, cache=cache)
        if cache.get_seq_length() != len(head):
            return None  # the model did not fill the cache we passed: run full passes instead
        return cache


def with_head(suffix_mask: torch.Tensor, head_length: int) -> torch.Tensor:
    """The attention mask of suffixes run on a cached head: the head's positions (all real) then theirs."""
    head = torch.ones(suffix_mask.shape[0], head_length, dtype=suffix_mask.dtype, device=suffix_mask.device)
    return torch.cat([head, suffix_mask], dim=1)
