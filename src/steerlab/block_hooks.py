"""Rewiring a decoder block's forward from the outside: the hidden states its hooks see, and temporary
forward replacements that skip blocks whose output is already known (weight-steering training's frozen
prefix, ablate's hidden-state reuse)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["block_hidden", "forwards_replaced", "with_block_hidden"]


def block_hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states a decoder block's forward pre-hook sees (first positional or ``hidden_states``)."""
    return args[0] if args else kwargs["hidden_states"]


def with_block_hidden(
    args: tuple[Any, ...], kwargs: dict[str, Any], hidden: torch.Tensor
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A block's (args, kwargs) with its hidden states replaced (a pre-hook's return value)."""
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@contextlib.contextmanager
def forwards_replaced(
    blocks: Sequence[nn.Module], replace: Callable[[int, Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Inside: block ``i``'s forward is ``replace(i, its forward)``; on exit each block gets back exactly
    what it had (its own instance attribute, or none, so the class's forward applies again)."""
    overridden: list[tuple[nn.Module, Any]] = []
    try:
        for index, block in enumerate(blocks):
            overridden.append((block, block.__dict__.get("forward")))
            block.forward = replace(index, block.forward)
        yield
    finally:
        for block, previous in overridden:
            if previous is None:
                del block.forward
            else:
                block.forward = previous
