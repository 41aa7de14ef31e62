"""Lazy re-exports (PEP 562): a module offers names that live in modules which import it back.

An eager ``from steerlab.generation import generate`` at the bottom of scoring.py makes
``import steerlab.generation`` fail when it is the first import (generation imports scoring, which
imports generation half-built). A module-level ``__getattr__`` made here imports on first use instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def reexporter(owner: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `owner` that returns ``table[name]``'s attribute `name` on first use."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
