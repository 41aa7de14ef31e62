"""Prompting baselines: the behaviour's persona prompt (prompt-simple) or engineered prompt, per pole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from steerlab.interventions import PromptIntervention
from steerlab.methods.registry import register_method


@dataclass
class PromptConfig:
    """`mode`: 'system' (persona as system prompt, the default) or 'user_prefix' (before the user message)."""

    mode: str = "system"


@dataclass
class SimplePromptConfig(PromptConfig):
    """`persona_pair`: which of the behaviour's persona paraphrases to use (0 = the first)."""

    persona_pair: int = 0


def _require_behavior(behavior: Any, method: str) -> Any:
    if behavior is None:
        raise ValueError(f"method {method!r} needs a behaviour (its prompts come from the behaviour)")
    return behavior


@register_method(
    "prompt-simple",
    "prompt",
    SimplePromptConfig,
    "the behaviour's persona prompt for each pole (first paraphrase)",
)
def fit_prompt_simple(
    model: nn.Module, tokenizer: Any, behavior: Any, config: SimplePromptConfig, seed: int
) -> PromptIntervention:
    behavior = _require_behavior(behavior, "prompt-simple")
    n_pairs = len(behavior.persona_pairs)
    if not 0 <= config.persona_pair < n_pairs:
        raise ValueError(
            f"prompt-simple: persona_pair {config.persona_pair} is out of range; behaviour "
            f"{behavior.name!r} has {n_pairs} persona pairs (0..{n_pairs - 1})"
        )
    pair = behavior.persona_pairs[config.persona_pair]
    meta = {"persona_pair_index": config.persona_pair, "prompt_source": "persona_pairs"}
    return PromptIntervention(pair.positive, pair.negative, mode=config.mode, meta=meta)


@register_method(
    "prompt-engineered",
    "prompt",
    PromptConfig,
    "the behaviour's engineered (long, explicit) prompt for each pole",
)
def fit_prompt_engineered(
    model: nn.Module, tokenizer: Any, behavior: Any, config: PromptConfig, seed: int
) -> PromptIntervention:
    behavior = _require_behavior(behavior, "prompt-engineered")
    if behavior.engineered is None:
        raise ValueError(
            f"prompt-engineered: behaviour {behavior.name!r} has no [engineered] prompts; add an "
            "[engineered] table with 'positive' and 'negative' to its file, or use prompt-simple"
        )
    engineered = behavior.engineered
    meta = {"prompt_source": "engineered"}
    return PromptIntervention(engineered.positive, engineered.negative, mode=config.mode, meta=meta)
