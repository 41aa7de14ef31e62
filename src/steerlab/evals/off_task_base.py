"""The unsteered side of `off-task`, computed once per model and data and reused by every arm.

Every off-task evaluation needs the same three things from the unsteered model: its greedy continuation of
each neutral prompt, its log-softmax over those continuations (the reference of KL(steered || base)) and its
log-likelihood of the knowledge answers (the c = 0 rows). They depend on the model's weights and the data,
never on the intervention, so a bench that evaluates nine arms in one process used to compute them nine
times (three times per arm: once per coefficient for the KL reference). `unsteered_reference` memoises them
per model object, and reuses an entry only while the model is provably the one it was computed on: same
parameter checksum, and no forward hook on any module (an intervention applied around the call).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from steerlab.scoring import encode
from steerlab.token_kl import bucketed_logprobs

__all__ = [
    "UnsteeredReference",
    "base_continuation_logprobs",
    "data_key",
    "memoised_reference",
    "unsteered_reference",
]


@dataclass(frozen=True)
class UnsteeredReference:
    """The unsteered model's greedy continuations, its log-softmax rows over them and its answer log-probs."""

    continuations: list[list[int]]
    kl_logprobs: list[torch.Tensor]  # per neutral prompt: [len(continuation), vocab]
    answer_logprobs: list[np.ndarray]  # per knowledge question: log P of each answer token


def base_continuation_logprobs(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    *,
    max_batch: int = 16,
    max_batch_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Unsteered log-softmax rows over each teacher-forced continuation (the base side of `token_kl`)."""
    encoded = encode(tokenizer, prompts)
    out: list[torch.Tensor] = [torch.zeros(0) for _ in encoded]
    with torch.inference_mode():
        for batch, rows in bucketed_logprobs(
            model, tokenizer, encoded, continuations, max_batch=max_batch, max_batch_tokens=max_batch_tokens
        ):
            for row, index in enumerate(batch):
                out[index] = rows[row][: len(continuations[index])].clone()
    return out


def _hooked(model: nn.Module) -> bool:
    return any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


def _checksum(model: nn.Module) -> tuple[float, ...]:
    """One float per parameter (its sum): any weight edit left in place changes it."""
    with torch.no_grad():
        return tuple(float(p.detach().sum()) for p in model.parameters())


_MEMO: weakref.WeakKeyDictionary[nn.Module, tuple[str, tuple[float, ...], UnsteeredReference]] = (
    weakref.WeakKeyDictionary()
)


def data_key(*parts: Any) -> str:
    """A digest of what a reference was computed from (texts, token ids, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def memoised_reference(model: nn.Module) -> UnsteeredReference | None:
    """The reference memoised for `model`, if any (what the next unchanged call would reuse)."""
    entry = _MEMO.get(model)
    return entry[2] if entry is not None else None


def unsteered_reference(
    model: nn.Module, key: str, compute: Callable[[], UnsteeredReference]
) -> UnsteeredReference:
    """`compute()`, or the entry memoised for this model object and `key` when the model is unchanged.

    A model carrying forward hooks is never memoised (an intervention may be applied around the call)."""
    if _hooked(model):
        return compute()
    checksum = _checksum(model)
    entry = _MEMO.get(model)
    if entry is not None and entry[0] == key and entry[1] == checksum:
        return entry[2]
    reference = compute()
    _MEMO[model] = (key, checksum, reference)
    return reference
