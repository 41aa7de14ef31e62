"""Which token positions are prompt and which are generated, shared by scoring and activation hooks.

Scoring sets this while it runs a forward pass so that an activation intervention restricted to
prompt or generated positions knows where to act. Outside scoring (a plain forward pass) every
position counts as prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass
class PositionState:
    """`generated_mask` is a bool [batch, seq] tensor for teacher-forced passes; `generating` marks HF generate."""

    generated_mask: torch.Tensor | None = None
    generating: bool = False


_STATE: ContextVar[PositionState | None] = ContextVar("steerlab_positions", default=None)


def current() -> PositionState | None:
    return _STATE.get()


@contextlib.contextmanager
def positions(generated_mask: torch.Tensor | None = None, generating: bool = False) -> Iterator[None]:
    token = _STATE.set(PositionState(generated_mask=generated_mask, generating=generating))
    try:
        yield
    finally:
        _STATE.reset(token)


def position_mask(hidden: torch.Tensor, which: str) -> torch.Tensor | None:
    """Bool mask [batch, seq, 1] of positions to steer for `which` in {'all','prompt','generated'}; None = all."""
    if which == "all":
        return None
    state = current()
    batch, seq = hidden.shape[0], hidden.shape[1]
    if state is not None and state.generated_mask is not None and state.generated_mask.shape[-1] == seq:
        generated = state.generated_mask.to(hidden.device)
    elif state is not None and state.generating and seq == 1:
        generated = torch.ones(batch, seq, dtype=torch.bool, device=hidden.device)
    else:
        generated = torch.zeros(batch, seq, dtype=torch.bool, device=hidden.device)
    mask = generated if which == "generated" else ~generated
    return mask.unsqueeze(-1)
