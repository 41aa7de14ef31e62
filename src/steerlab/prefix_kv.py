"""Run the tokens every prompt of a batch starts with once, and the rest of each prompt on top of its KV cache.

An eval's prompts share a chat-template head: SmolLM2's default system prompt and the user-turn marker are
24 of sycophancy-claims' 57 tokens per prompt (31 with the claim template's opening words), a quarter of
tiny-mfv's and ai-risk's. Scoring a batch runs that head once (batch 1, under whatever intervention is
applied, since the head's keys and values depend on the weights and hooks in force), repeats its KV cache
over the batch, and runs only the suffixes, left-padded after the head with position ids that continue
from it. Attention and every position-wise edit see the same inputs as in one full pass, so scores agree
with the unsplit forward to float round-off (`tests/test_prefix_kv.py`). Rows steered at different coefficients
(:mod:`steerlab.row_coefficients`) get the head run once per distinct coefficient, as one small batch.

Rows often share more than the head: an A/B question scored in both letter orders, a vignette asked in two
frames (tiny-mfv's ``is_wrong`` / ``is_acceptable``). :func:`shared_groups` finds such groups within a batch;
each group's shared stretch (its "mid") runs once on the head's cache, at one row per group, and each row's
remaining tokens run on its group's cache: a third of ai-risk's and tiny-mfv's tokens after the head.

Anything this cannot handle (a model without a KV-cache argument, an older transformers without
per-layer caches, a cache with sliding-window or other special layers) runs the plain full forward.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.row_coefficients import HeadGroups, batch_rows, head_groups

__all__ = [
    "HEAD",
    "MIN_PREFIX",
    "PrefixCache",
    "SharedGroups",
    "common_prefix_length",
    "plain_dynamic_cache",
    "prefix_clusters",
    "shared_groups",
    "with_head",
]

MIN_PREFIX = 8
"""Shorter shared heads are not worth a separate forward pass."""

TRANSIENT = "_steerlab_transient"
"""Attribute set on a suffix pass's cache: nothing reads it after the pass (see steerlab.prefix_reuse)."""

HEAD = "_steerlab_head"
"""Attribute set on a cache holding a shared head: the token ids it holds, so a record of a pass on it
(steerlab.prefix_reuse) is told apart from the same tokens on another head. A cache with a head but not
marked transient is extended by the pass (a group's mid) and read again by a later pass."""

GROUPING_GAIN = 0.85
"""Shared groups are run only when their padded tokens are at most this share of the plain suffix pass's."""


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


def _shared_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def _runs(rows: Sequence[Sequence[int]], min_shared: int) -> list[tuple[list[int], int]]:
    """Rows in lexicographic order, cut into runs sharing >= `min_shared` first tokens: (members, shared
    length, leaving each member at least one token of its own).

    A run is cut further where its parts share much more than the whole: two questions that open alike
    ("We (your creators) ...") and are each asked in two letter orders are two runs of two, since running
    each question once saves more than running the common opening once."""
    order = sorted(range(len(rows)), key=lambda i: list(rows[i]))
    # common[k]: tokens shared by the rows at sorted positions k - 1 and k (common[0] unused)
    common = [0] + [_shared_length(rows[a], rows[b]) for a, b in zip(order, order[1:], strict=False)]

    def best(lo: int, hi: int, depth: int) -> tuple[int, list[tuple[list[int], int]]]:
        """(tokens saved, runs) for sorted positions lo..hi-1, all sharing >= min_shared tokens."""
        members = order[lo:hi]
        if hi - lo == 1:
            return 0, [(members, len(rows[members[0]]) - 1)]
        low = min(common[lo + 1 : hi])
        shared = min(low, min(len(rows[i]) for i in members) - 1)
        whole = (hi - lo - 1) * shared, [(members, shared)]
        if depth > 100:
            return whole
        cuts = [lo] + [k for k in range(lo + 1, hi) if common[k] == low] + [hi]
        saved, runs = 0, []
        for a, b in zip(cuts, cuts[1:], strict=False):
            part_saved, part_runs = best(a, b, depth + 1)
            saved += part_saved
            runs += part_runs
        return (saved, runs) if saved > whole[0] else whole

    runs: list[tuple[list[int], int]] = []
    start = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or common[k] < min_shared:
            runs += best(start, k, 0)[1]
            start = k
    return runs


def prefix_clusters(rows: Sequence[Sequence[int]], min_shared: int = MIN_PREFIX) -> list[list[int]]:
    """Indices of `rows` in clusters that share >= `min_shared` first tokens (lone rows alone): batching a
    cluster together lets :func:`shared_groups` run its shared tokens once."""
    return [members for members, _length in _runs(rows, min_shared)] if rows else []


@dataclass(frozen=True)
class SharedGroups:
    """Rows of a batch grouped by a shared stretch of tokens after the batch's head.

    `mids`: each group's shared tokens (run once per group); `assignment`: each row's group;
    `rests`: each row's tokens after its group's mid (at least one).
    """

    mids: tuple[tuple[int, ...], ...]
    assignment: tuple[int, ...]
    rests: tuple[tuple[int, ...], ...]


def shared_groups(suffixes: Sequence[Sequence[int]], min_shared: int = MIN_PREFIX) -> SharedGroups | None:
    """Group rows whose `suffixes` start with the same >= `min_shared` tokens, or None when running the groups'
    mids and then the rows' rests would not save at least 1 - GROUPING_GAIN of the padded tokens.

    Mids and rests are each padded to their longest, so every group's mid is cut where every rest keeps
    at least `r` tokens, `r` chosen for the fewest padded tokens; a lone row gets a mid that way too.
    """
    if len(suffixes) < 2 or min(len(s) for s in suffixes) < 1:
        return None
    runs = _runs(suffixes, min_shared)
    members = [run for run, _length in runs]
    shared = [length for _run, length in runs]
    if all(len(group) == 1 for group in members):
        return None
    shortest = [min(len(suffixes[row]) for row in group) for group in members]
    longest = [max(len(suffixes[row]) for row in group) for group in members]

    def mid_lengths(rest: int) -> list[int]:
        """Each group's mid when every rest keeps at least `rest` tokens (a mid never exceeds what its
        group shares)."""
        return [max(0, min(length, short - rest)) for length, short in zip(shared, shortest, strict=True)]

    def padded(rest: int) -> int:
        mids = mid_lengths(rest)
        widest_rest = max(long - mid for long, mid in zip(longest, mids, strict=True))
        return len(members) * max(mids) + len(suffixes) * widest_rest

    candidates = {short - length for short, length in zip(shortest, shared, strict=True)}
    rest = min(sorted(candidates), key=padded)
    if padded(rest) > GROUPING_GAIN * len(suffixes) * max(longest):
        return None
    mids: list[tuple[int, ...]] = []
    assignment = [0] * len(suffixes)
    rests: list[tuple[int, ...]] = [()] * len(suffixes)
    for number, (group, length) in enumerate(zip(members, mid_lengths(rest), strict=True)):
        mids.append(tuple(suffixes[group[0]][:length]))
        for row in group:
            assignment[row] = number
            rests[row] = tuple(suffixes[row][length:])
    return SharedGroups(tuple(mids), tuple(assignment), tuple(rests))


def plain_dynamic_cache(model: nn.Module) -> Any | None:
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

    def for_batch(self, head: Sequence[int], rows: int, transient: bool = True) -> Any | None:
        """A fresh cache holding `head`'s keys and values repeated for `rows` rows, or None (no sharing).

        `transient`: the pass run on it is its last reader (not so for a pass that extends it, see
        :meth:`for_groups`)."""
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
        setattr(cache, TRANSIENT, transient)
        setattr(cache, HEAD, key[0])
        return cache

    def for_groups(
        self, head: Sequence[int], groups: SharedGroups, pad: int
    ) -> tuple[Any, torch.Tensor] | None:
        """A cache holding, for each row, the head then its group's mid, and its attention mask; None when the
        head cannot be shared. Runs the mids at one row per group, on the head's cache."""
        from steerlab.scoring import forward_logits, pad_left

        if head_groups(len(groups.assignment)) is not None:
            return None  # per-row coefficients: rows of one group may be steered differently
        mids = groups.mids
        if len(head) >= MIN_PREFIX:
            cache = self.for_batch(head, len(mids), transient=False)
        else:  # a head too short to run alone goes with each mid, onto an empty cache
            mids = tuple((*head, *mid) for mid in mids)
            head = ()
            cache = plain_dynamic_cache(self.model) if self.argument is not None else None
        if cache is None:
            return None
        input_ids, mask = pad_left(mids, pad, self.device)
        mask = with_head(mask, len(head))
        forward_logits(self.model, input_ids, mask, last_only=True, cache=cache)
        if cache.get_seq_length() != mask.shape[1]:
            return None
        index = torch.tensor(groups.assignment, dtype=torch.long, device=self.device)
        cache.batch_select_indices(index)
        setattr(cache, TRANSIENT, True)
        setattr(cache, HEAD, (tuple(head), mids, groups.assignment))
        return cache, mask[index]

    def _run_head(self, head: tuple[int, ...]) -> Any | None:
        return self._run_heads(head, None)

    def _run_heads(self, head: tuple[int, ...], groups: HeadGroups | None) -> Any | None:
        """The head's cache at batch 1, or at one row per coefficient group (declared as those rows)."""
        cache = plain_dynamic_cache(self.model)
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
