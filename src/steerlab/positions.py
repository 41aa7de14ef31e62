"""Which token positions are prompt and which are generated, shared by scoring and activation hooks.

Scoring sets this while it runs a forward pass so that an activation intervention restricted to
prompt or generated positions knows where to act:

- teacher-forced passes (token KL) pass a bool ``generated_mask`` [batch, seq];
- generation (:func:`generating`) marks the first forward pass of ``model.generate`` (the prefill of
  the prompt) as prompt and every later pass (one new token each with a KV cache, or the whole
  sequence without one) as generated from the prompt's width on.

Outside scoring (a plain forward pass) every position counts as prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from steerlab.scoped import scoped


@dataclass
class PositionState:
    """`generated_mask` is a bool [batch, seq] tensor for teacher-forced passes; `generating` marks HF generate.

    During generation, `prefill_done` turns True after the first forward pass and `prompt_width` is
    the padded prompt length; `prefill_done=None` means "not tracked", where a 1-token pass counts as
    generated (the behaviour of the first spine).
    """

    generated_mask: torch.Tensor | None = None
    generating: bool = False
    prefill_done: bool | None = None
    prompt_width: int = 0


_STATE: ContextVar[PositionState | None] = ContextVar("steerlab_positions", default=None)


def current() -> PositionState | None:
    return _STATE.get()


@contextlib.contextmanager
def positions(
    generated_mask: torch.Tensor | None = None, generating: bool = False
) -> Iterator[PositionState]:
    """Declare the positions of the forward passes run inside the block; yields the state."""
    state = PositionState(generated_mask=generated_mask, generating=generating)
    with scoped(_STATE, state):
        yield state


@contextlib.contextmanager
def generating(model: nn.Module, prompt_width: int) -> Iterator[PositionState]:
    """Around one ``model.generate`` call on prompts padded to `prompt_width`: prefill = prompt, rest = generated."""
    with positions(generating=True) as state:
        state.prefill_done, state.prompt_width = False, int(prompt_width)

        def after_forward(_module: nn.Module, _inputs: Any, _output: Any) -> None:
            state.prefill_done = True

        handle = model.register_forward_hook(after_forward)
        try:
            yield state
        finally:
            handle.remove()


def _generated(state: PositionState | None, batch: int, seq: int, device: torch.device) -> torch.Tensor:
    none = torch.zeros(batch, seq, dtype=torch.bool, device=device)
    if state is None:
        return none
    if state.generated_mask is not None and state.generated_mask.shape[-1] == seq:
        return state.generated_mask.to(device)
    if not state.generating:
        return none
    if state.prefill_done is None:  # untracked generation: a single-token pass is a decoding step
        return ~none if seq == 1 else none
    if not state.prefill_done:
        return none
    if seq == 1:  # a decoding step with a KV cache
        return ~none
    generated = torch.arange(seq, device=device) >= state.prompt_width  # a full re-run without a cache
    return generated.unsqueeze(0).expand(batch, seq)


def position_mask(hidden: torch.Tensor, which: str) -> torch.Tensor | None:
    """Bool mask [batch, seq, 1] of positions to steer for `which` in {'all','prompt','generated'}; None = all."""
    if which == "all":
        return None
    generated = _generated(current(), hidden.shape[0], hidden.shape[1], hidden.device)
    mask = generated if which == "generated" else ~generated
    return mask.unsqueeze(-1)
