"""Steering methods, one file per method family, all registered by name in :mod:`.registry`."""

from steerlab.methods.registry import (
    FAMILIES,
    MethodSpec,
    UnknownMethodError,
    extract,
    get_method,
    list_methods,
    register_method,
)

# One import line per method module registers its methods.

__all__ = [
    "FAMILIES",
    "MethodSpec",
    "UnknownMethodError",
    "extract",
    "get_method",
    "list_methods",
    "register_method",
]
