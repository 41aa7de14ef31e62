"""Which contrast pairs a contrastive activation method reads: persona prompts or lock-in scenarios.

``source = "personas"`` (the default): the behaviour's persona pairs, each on a question (and an assistant
opening), the two sides differing only in the system persona (`steerlab.behaviors.contrast_items`).

``source = "scenarios"``: a judged trait's lock-in scenarios (``[[scenarios]]`` in its TOML file): one user
message, no system prompt, and an assistant completion per pole that ends where the behaviour has
already happened, so the model cannot pivot (the same prompts `steerlab vet` generates from). The trait is
the ``trait`` option (a built-in trait or a trait file), else the behaviour's name, as ``trait-eval`` does.
Activations are read where the persona pairs are read (``token_position``): ``last`` = the last token of
the locked-in completion, ``mean_response`` = the mean over the completion's tokens.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "SOURCES",
    "ContrastSourceError",
    "check_source",
    "contrast_pairs",
    "scenario_pairs",
    "source_record",
]

SOURCES = ("personas", "scenarios")


class ContrastSourceError(ValueError):
    """The asked-for contrast data does not exist (a trait without scenarios, no trait to take them from)."""


def check_source(source: str, where: str = "source") -> None:
    if source not in SOURCES:
        raise ValueError(f"{where}: expected one of {list(SOURCES)}, got {source!r}")


def scenario_pairs(trait: Any, n: int | None, seed: int, method: str) -> list[Any]:
    """The trait's lock-in scenarios as contrast items: all of them in file order, or a seeded sample of
    ``n`` when the trait has more (scenarios are never repeated: a duplicate pair adds nothing)."""
    from steerlab.registry import UnknownNameError
    from steerlab.traits import get_trait

    try:
        resolved = get_trait(trait)
    except UnknownNameError as error:
        raise ContrastSourceError(
            f"{method}: source=scenarios reads a trait's lock-in scenarios, and {str(trait)!r} is not a "
            f"built-in trait; pass trait=NAME or trait=FILE.toml ({error})"
        ) from None
    scenarios = list(resolved.scenarios)
    if not scenarios:
        raise ContrastSourceError(
            f"{method}: trait {resolved.name!r} ({resolved.source}) has no [[scenarios]] (user, positive, "
            "negative lock-in completions); add some to its file or use source=personas"
        )
    if n is not None and n < len(scenarios):
        if n < 1:
            raise ContrastSourceError(f"{method}: n_pairs must be >= 1, got {n}")
        keep = sorted(random.Random(f"{seed}:{resolved.name}").sample(range(len(scenarios)), n))
        scenarios = [scenarios[i] for i in keep]
    return scenarios


def _trait_of(behavior: Any, config: Any, method: str) -> str:
    trait = getattr(config, "trait", None) or (behavior.name if behavior is not None else None)
    if trait is None:
        raise ContrastSourceError(f"{method}: source=scenarios needs a trait: pass trait=NAME or FILE")
    return str(trait)


def contrast_pairs(behavior: Any, config: Any, seed: int, method: str) -> list[Any]:
    """The contrast items ``config`` asks for (its ``source``, ``trait``, ``n_pairs``, ``use_suffixes``)."""
    from steerlab.behaviors import contrast_items

    source = getattr(config, "source", "personas")
    check_source(source, f"{method}: source")
    if source == "scenarios":
        return scenario_pairs(_trait_of(behavior, config, method), config.n_pairs, seed, method)
    if behavior is None:
        raise ValueError(f"method {method!r} is contrastive and needs a behaviour (its persona pairs)")
    return contrast_items(behavior, n=config.n_pairs, seed=seed, use_suffixes=config.use_suffixes)


def source_record(behavior: Any, config: Any, method: str) -> dict[str, Any]:
    """What an intervention records about its contrast data besides the prompts' hash: the source and,
    for scenarios, the trait's name and file."""
    source = getattr(config, "source", "personas")
    if source != "scenarios":
        return {"contrast_source": source}
    from steerlab.traits import get_trait

    trait = get_trait(_trait_of(behavior, config, method))
    return {"contrast_source": source, "scenario_trait": trait.name, "scenario_file": trait.source}


def check_contrast_data(behavior: Any, config: Any, method: str) -> None:
    """Fail now (before a model loads) when ``config`` asks for scenarios that do not exist; a no-op for
    configs without a ``source`` option and for persona pairs."""
    if getattr(config, "source", None) == "scenarios":
        scenario_pairs(_trait_of(behavior, config, method), config.n_pairs, 0, method)
