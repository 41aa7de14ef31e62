"""Scoped memos for the expensive decompositions behind the ablation variants.

Building one adapter's variants asks for the same tensor's own SVD once per split (~14 times), the base
weight's SVD once per base-lens split and adapter, and the shared basis once per K and adapter. Inside a
`memoized` block each is computed once: results are keyed on the identity of the object they were computed
from, which is pinned in the memo (so its id cannot be reused while the entry lives), and the memo is
dropped when the block ends. Each memo is bounded in bytes: past the cap, results are computed and not kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["DEFAULT_MAX_BYTES", "Memo", "active", "memoized"]

DEFAULT_MAX_BYTES = 1 << 30
"""Per memo (0: keep nothing, i.e. compute every time as without a memo)."""
T = TypeVar("T")

_ACTIVE: dict[str, Memo] = {}


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    sized = getattr(value, "memo_nbytes", None)  # an object that says what it owns (e.g. a ThinSVD)
    return int(sized()) if callable(sized) else 0


class Memo:
    """Results keyed on (pinned) inputs, up to `max_bytes` of tensors."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        self.bytes = 0
        self.hits = 0
        self.entries: dict[Hashable, tuple[Any, Any]] = {}

    def get(self, key: Hashable, pins: Any, compute: Callable[[], T]) -> T:
        """The stored result for `key`, or `compute()` (kept, with `pins` alive, while under the cap)."""
        found = self.entries.get(key)
        if found is not None:
            self.hits += 1
            return found[1]
        value = compute()
        size = _nbytes(value)
        if self.bytes + size <= self.max_bytes:
            self.entries[key] = (pins, value)
            self.bytes += size
        return value


def active(kind: str) -> Memo | None:
    """The memo of `kind` open now, if any."""
    return _ACTIVE.get(kind)


@contextlib.contextmanager
def memoized(*kinds: str, max_bytes: int | None = None) -> Iterator[None]:
    """Open a memo for each of `kinds` for the block (one already open, from an outer block, is kept)."""
    opened = [kind for kind in kinds if kind not in _ACTIVE]
    for kind in opened:
        _ACTIVE[kind] = Memo(max_bytes)
    try:
        yield
    finally:
        for kind in opened:
            _ACTIVE.pop(kind, None)
