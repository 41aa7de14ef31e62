"""Teacher-forced log-probs of given continuations (lm-eval-harness style per-option scoring).

`score_continuations` is re-exported by `steerlab.scoring` and as ``steerlab.score_continuations``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from steerlab.scoring import DEFAULT_MAX_BATCH, encode
from steerlab.token_kl import bucketed_logprobs

__all__ = ["ContinuationScores", "continuation_ids", "score_continuations"]


@dataclass
class ContinuationScores:
    """Teacher-forced log-probs of each continuation after its prompt, in input order.

    ``token_logprobs[i]`` holds log P(token_t | prompt, earlier continuation tokens) for every token of
    continuation i; ``total`` is their sum (lm-eval-harness ``acc``) and ``mean`` the per-token mean.
    """

    token_logprobs: list[np.ndarray]

    @property
    def n_tokens(self) -> np.ndarray:
        return np.array([len(t) for t in self.token_logprobs], dtype=np.int64)

    @property
    def total(self) -> np.ndarray:
        return np.array([float(t.sum()) for t in self.token_logprobs])

    @property
    def mean(self) -> np.ndarray:
        return np.array([float(t.mean()) if len(t) else float("nan") for t in self.token_logprobs])


def continuation_ids(tokenizer: Any, continuation: str | Sequence[int]) -> list[int]:
    """Token ids of a continuation: a string is tokenised on its own, without special tokens."""
    if isinstance(continuation, str):
        return list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
    return [int(i) for i in continuation]


def score_continuations(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[str | Sequence[int]],
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ContinuationScores:
    """Per-token and summed log P(continuation | prompt) for each (prompt, continuation) pair, batched.

    Prompts are already-formatted strings (e.g. from `steerlab.format_chat`); a continuation is a string
    (tokenised separately, so start it with a space where the text needs one) or token ids. Run it inside
    ``intervention.apply(model, c)`` for a steered score: continuation positions are marked generated, so
    position-restricted activation interventions act there as during generation.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"continuations has {len(continuations)} entries, prompts has {len(prompts)}")
    prompt_ids = encode(tokenizer, prompts)
    targets = [continuation_ids(tokenizer, c) for c in continuations]
    for number, ids in enumerate(targets, start=1):
        if not ids:
            raise ValueError(f"continuation {number} is empty (no tokens to score)")
    out: list[np.ndarray] = [np.zeros(0) for _ in prompt_ids]
    with torch.inference_mode():
        for batch, rows in bucketed_logprobs(
            model, tokenizer, prompt_ids, targets, max_batch=max_batch, max_batch_tokens=max_batch_tokens
        ):
            for logp, index in zip(rows, batch, strict=True):
                target = torch.tensor(targets[index], device=logp.device)
                out[index] = (
                    logp[torch.arange(len(target), device=logp.device), target].double().cpu().numpy()
                )
            if progress is not None:
                progress(len(batch))
    return ContinuationScores(out)
