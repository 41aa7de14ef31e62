"""The unsteered model's keys and values of a fixed set of prompts, for the base side of repeated KL evaluations.

An iso-KL search measures KL(steered || base) on the same off-task prompts at every |c| it tries; only the
greedy rollout after each prompt changes. :class:`PromptKV` runs each batch of base prompts once, all but
their last token, under no steer, and keeps that KV cache; each later evaluation copies it and runs only the
prompts' last token and the rollout on top (about 20 tokens instead of 60 on the quick preset). Position ids
and attention are those of one full pass (left padding, ids continuing from the cache), so the log-probs
agree with :func:`steerlab.token_kl.continuation_logprobs` to float round-off
(``tests/test_base_kv.py``). Rollouts of unequal lengths, or a model whose cache cannot be shared, take
that full pass instead.

Valid while the model's weights are the base weights whenever :meth:`PromptKV.logprobs` runs: create one per
calibration, as :func:`steerlab.calibrate.kl_measurer` does, and call it outside any steer.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.models import model_device
from steerlab.prefix_kv import plain_dynamic_cache
from steerlab.scoring import cache_argument, default_batch_tokens, forward_logits, length_buckets, pad_left

__all__ = ["PromptKV"]


class PromptKV:
    """Base log-probs of continuations after fixed prompts, reusing each prompt batch's KV cache."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_batch: int = 16) -> None:
        self.model = model
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_batch = max_batch
        self.device = model_device(model)
        self.argument = cache_argument(model)
        self.caches: dict[tuple[tuple[int, ...], ...], tuple[Any, torch.Tensor, torch.Tensor] | None] = {}
        self.runs = 0  # prompt batches run (not copied from the store): for tests and benchmarks

    def logprobs(
        self, prompt_ids: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
    ) -> list[torch.Tensor]:
        """Per row, the base model's log-softmax [len(continuation), vocab] at the positions predicting each
        continuation token."""
        from steerlab.token_kl import continuation_logprobs

        if len(prompt_ids) != len(continuations):
            raise ValueError(f"{len(continuations)} continuations for {len(prompt_ids)} prompts")
        out: list[torch.Tensor] = [torch.empty(0) for _ in prompt_ids]
        lengths = [len(p) + len(c) for p, c in zip(prompt_ids, continuations, strict=True)]
        budget = default_batch_tokens(self.device)
        with torch.inference_mode():
            for batch in length_buckets(lengths, self.max_batch, budget):
                prompts = [prompt_ids[i] for i in batch]
                rows = [continuations[i] for i in batch]
                found = self._on_cache(prompts, rows)
                if found is None:
                    found = continuation_logprobs(
                        self.model, prompts, rows, self.pad, self.device, contextlib.nullcontext
                    )
                for index, logprobs in zip(batch, found, strict=True):
                    out[index] = logprobs
        return out

    def _on_cache(
        self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
    ) -> list[torch.Tensor] | None:
        """The rows' log-probs on their prompts' stored cache, or None (run the full pass instead)."""
        n = len(continuations[0])
        if n < 1 or any(len(c) != n for c in continuations) or min(len(p) for p in prompts) < 2:
            return None
        stored = self._prompt_cache(prompts)
        if stored is None:
            return None
        cache, last, mask = stored
        suffix = torch.cat([last, torch.tensor([list(c[:-1]) for c in continuations], device=self.device)], 1)
        full_mask = torch.cat([mask, torch.ones_like(suffix)], dim=1)
        logits = forward_logits(self.model, suffix, full_mask, keep=n, cache=copy.deepcopy(cache))
        return [F.log_softmax(row.float(), dim=-1) for row in logits]

    def _prompt_cache(
        self, prompts: Sequence[Sequence[int]]
    ) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        """(the cache of every prompt but its last token, the last tokens [rows, 1], the cache's mask)."""
        key = tuple(tuple(p) for p in prompts)
        if key not in self.caches:
            self.caches[key] = self._run_prompts(prompts)
        return self.caches[key]

    def _run_prompts(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, torch.Tensor, torch.Tensor] | None:
        cache = plain_dynamic_cache(self.model) if self.argument is not None else None
        if cache is None:
            return None
        input_ids, mask = pad_left(prompts, self.pad, self.device)  # left padding: the last column is real
        body, body_mask = input_ids[:, :-1], mask[:, :-1]
        forward_logits(self.model, body, body_mask, last_only=True, cache=cache)
        self.runs += 1
        if cache.get_seq_length() != body.shape[1]:
            return None  # the model did not fill the cache it was given
        return cache, input_ids[:, -1:], body_mask
