"""A context variable set for the duration of a block: the one pattern behind steerlab's declarations to
code further down the stack (rows of a batch, per-row coefficients, positions, progress, prefix reuse)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["scoped"]

T = TypeVar("T")


@contextlib.contextmanager
def scoped(var: contextvars.ContextVar[T], value: T) -> Iterator[T]:
    """`var` holds `value` inside the block (yielded) and its previous value again on exit."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)
