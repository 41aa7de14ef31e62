"""Per-token KL(steered || base) over teacher-forced continuations, and the log-softmax rows it compares;
re-exported by `steerlab.scoring`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from steerlab.models import model_device
from steerlab.positions import positions
from steerlab.prefix_kv import PrefixCache, common_prefix_length, with_head
from steerlab.row_coefficients import batch_rows
from steerlab.scoring import default_batch_tokens, encode, forward_logits, length_buckets, pad_left

__all__ = ["bucketed_logprobs", "continuation_logprobs", "token_kl"]


def token_kl(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[int]],
    steer: Callable[[], contextlib.AbstractContextManager[Any]],
    *,
    max_batch: int = 16,
    base_prompts: Sequence[str] | None = None,
    max_batch_tokens: int | None = None,
    base_logprobs: Sequence[torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """Per-token KL(steered || base) over teacher-forced continuations, one array per prompt.

    The steered pass runs inside ``steer()``; positions of the continuation are marked generated so
    that position-restricted activation interventions act there. `base_prompts` lets a prompt
    intervention compare its rewritten prompt with the unmodified one (same continuation).
    `base_logprobs` (per prompt, [len(continuation), vocab], from `base_continuation_logprobs`) skips the
    base pass when the caller scores the same continuations at several coefficients.
    Batches hold at most `max_batch` rows and `max_batch_tokens` padded tokens (default: per device).
    """
    steered_ids = encode(tokenizer, prompts)
    base_ids = encode(tokenizer, base_prompts) if base_prompts is not None else steered_ids
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[np.ndarray] = [np.zeros(0) for _ in prompts]
    if len(steered_ids) != len(base_ids):
        raise ValueError(f"base_prompts has {len(base_ids)} prompts, prompts has {len(steered_ids)}")
    if len(continuations) != len(steered_ids):
        raise ValueError(f"continuations has {len(continuations)} entries, prompts has {len(steered_ids)}")
    lengths = [
        max(len(p), len(b)) + len(c) for p, b, c in zip(steered_ids, base_ids, continuations, strict=True)
    ]
    budget = max_batch_tokens if max_batch_tokens is not None else default_batch_tokens(device)
    with torch.inference_mode():
        for batch in length_buckets(lengths, max_batch, budget):
            with batch_rows(batch):  # per-row coefficients (apply_rows) follow the rows into the batch
                steered_lp = continuation_logprobs(
                    model,
                    [steered_ids[i] for i in batch],
                    [continuations[i] for i in batch],
                    pad,
                    device,
                    steer,
                )
            base_lp = (
                [base_logprobs[i] for i in batch]
                if base_logprobs is not None
                else continuation_logprobs(
                    model,
                    [base_ids[i] for i in batch],
                    [continuations[i] for i in batch],
                    pad,
                    device,
                    contextlib.nullcontext,
                )
            )
            for row, index in enumerate(batch):
                n = len(continuations[index])
                s, b = steered_lp[row][:n], base_lp[row][:n]
                results[index] = (s.exp() * (s - b)).sum(-1).clamp(min=0).cpu().double().numpy()
    return results


def continuation_logprobs(
    model: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    pad: int,
    device: torch.device,
    context: Callable[[], contextlib.AbstractContextManager[Any]],
    share_prefix: bool = True,
) -> list[torch.Tensor]:
    """Log-softmax rows [n_cont, vocab] at the positions that predict each continuation token.

    The tokens every row starts with (within the prompts) run once, under `context`, when
    `share_prefix` (:mod:`steerlab.prefix_kv`)."""
    full = [list(p) + list(c) for p, c in zip(prompt_ids, continuations, strict=True)]
    shortest_prompt = min(len(p) for p in prompt_ids)
    head_length = min(common_prefix_length(full), shortest_prompt - 1) if share_prefix else 0
    with context():
        heads = PrefixCache(model, device)
        with positions(generated_mask=torch.zeros(1, max(head_length, 0), dtype=torch.bool, device=device)):
            cache = heads.for_batch(full[0][:head_length], len(full)) if head_length > 0 else None
        suffixes = [ids[head_length:] for ids in full] if cache is not None else full
        input_ids, mask = pad_left(suffixes, pad, device)
        width = input_ids.shape[1]
        generated = torch.zeros_like(mask, dtype=torch.bool)
        for row, cont in enumerate(continuations):
            if cont:
                generated[row, width - len(cont) :] = True
        keep = min(width, max(len(cont) for cont in continuations) + 1)  # continuations end every row
        mask = with_head(mask, head_length) if cache is not None else mask
        with positions(generated_mask=generated):
            logits = forward_logits(model, input_ids, mask, keep=keep, cache=cache)
    out = []
    for row, cont in enumerate(continuations):
        n = len(cont)
        rows = logits[row, keep - n - 1 : keep - 1, :].float() if n else logits[row, :0, :].float()
        out.append(F.log_softmax(rows, dim=-1))
    return out


def bucketed_logprobs(
    model: nn.Module,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    max_batch: int,
    max_batch_tokens: int | None = None,
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    """(row indices, their log-softmax rows) per length bucket of (prompt, continuation) rows, under whatever
    steer is active (each batch declares its rows, so per-row coefficients follow them); the caller holds
    ``torch.inference_mode``."""
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    budget = max_batch_tokens if max_batch_tokens is not None else default_batch_tokens(device)
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, continuations, strict=True)]
    for batch in length_buckets(lengths, max_batch, budget):
        with batch_rows(batch):
            rows = continuation_logprobs(
                model,
                [prompt_ids[i] for i in batch],
                [continuations[i] for i in batch],
                pad,
                device,
                contextlib.nullcontext,
            )
        yield batch, rows
