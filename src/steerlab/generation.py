"""Batched generation (greedy or seeded sampling) through transformers' ``generate`` with steerlab's growing
KV cache; re-exported by `steerlab.scoring`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from steerlab.kv_cache import growing_cache
from steerlab.models import model_device, text_config
from steerlab.placement import fit_batch_size, halving_on_oom
from steerlab.positions import generating
from steerlab.row_coefficients import batch_rows
from steerlab.scoring import encode, length_buckets, pad_left

__all__ = ["generate", "generate_cache_kwarg", "generate_ids", "greedy_rollout"]


@functools.cache
def generate_cache_kwarg() -> str:
    """The name under which ``model.generate`` takes a cache object: ``cache`` in transformers releases that
    renamed it (passing ``past_key_values`` there warns that it goes away in 6.0), else ``past_key_values``."""
    from transformers.generation.utils import GenerationMixin

    generate: Any = GenerationMixin.generate
    renamed = generate.__closure__ or ()  # transformers' deprecate_kwarg wrapper keeps (new, old) names here
    names = {cell.cell_contents for cell in renamed if isinstance(cell.cell_contents, str)}
    return "cache" if {"cache", "past_key_values"} <= names else "past_key_values"


def generate_ids(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    max_batch: int = 16,
    stop_at_eos: bool = True,
) -> list[list[int]]:
    """New token ids per prompt (greedy or sampled), in input order; trimmed after EOS when asked."""
    settings: dict[str, Any] = {"do_sample": do_sample}
    if do_sample:
        settings |= {"temperature": temperature, "top_p": top_p, "top_k": 0}
    ids, _logprobs = _generate(
        model, tokenizer, prompts, settings, max_new_tokens, max_batch, seed, stop_at_eos, keep_logprobs=False
    )
    return ids


def greedy_rollout(
    model: nn.Module, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, max_batch: int = 16
) -> tuple[list[list[int]], list[torch.Tensor]]:
    """A greedy rollout of exactly `max_new_tokens` tokens per prompt (EOS does not stop it) and, per prompt,
    the log-softmax [max_new_tokens, vocab] (float32, on the model's device) of the next-token logits that
    chose each token: what a teacher-forced pass over prompt + rollout gives, to float round-off, without
    running it (iso-KL calibration's steered side, :mod:`steerlab.calibrate_arms`)."""
    return _generate(
        model,
        tokenizer,
        prompts,
        {"do_sample": False},
        max_new_tokens,
        max_batch,
        0,
        False,
        keep_logprobs=True,
    )


def _generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    sampling: dict[str, Any],
    max_new_tokens: int,
    max_batch: int,
    seed: int,
    stop_at_eos: bool,
    *,
    keep_logprobs: bool,
) -> tuple[list[list[int]], list[torch.Tensor]]:
    """(new ids per prompt, and with `keep_logprobs` each one's step log-softmax [len(ids), vocab], else [])."""
    encoded = encode(tokenizer, prompts)
    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    results: list[list[int]] = [[] for _ in encoded]
    logprobs: list[torch.Tensor] = [torch.empty(0) for _ in encoded]
    settings: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad, **sampling}
    if not sampling.get("do_sample"):
        settings |= {"temperature": None, "top_p": None, "top_k": None}
    if not stop_at_eos:
        settings["eos_token_id"] = None
        settings["min_new_tokens"] = max_new_tokens
    if keep_logprobs:
        settings |= {"return_dict_in_generate": True, "output_logits": True}
    longest = max((len(e) for e in encoded), default=1) + max_new_tokens
    config = text_config(model)
    kv_bytes = 2 * 2 * int(getattr(config, "num_hidden_layers", 1)) * int(getattr(config, "hidden_size", 1))
    row_bytes = kv_bytes * longest * 4
    if keep_logprobs:  # each step's logits, stacked, then their log-softmax: float32 [T, vocab] twice per row
        row_bytes += 2 * 4 * max_new_tokens * int(getattr(config, "vocab_size", 0) or 0)
    max_batch = max(max_batch, fit_batch_size(max_batch, device, row_bytes))  # CUDA: fill memory

    def run(rows: Sequence[int]) -> list[tuple[list[int], torch.Tensor | None]]:
        input_ids, mask = pad_left([encoded[i] for i in rows], pad, device)
        cache = growing_cache(model)
        extra = {generate_cache_kwarg(): cache} if cache is not None else {}
        with batch_rows(rows), generating(model, input_ids.shape[1]):
            output = model.generate(input_ids=input_ids, attention_mask=mask, **settings, **extra)  # type: ignore[operator]  # nn.Module.__getattr__ types it Tensor | Module
        if not keep_logprobs:
            return [(ids, None) for ids in output[:, input_ids.shape[1] :].tolist()]
        # raw logits of each step (before any logits processor), as a teacher-forced pass computes them
        steps = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)
        new = output.sequences[:, input_ids.shape[1] :].tolist()
        return [(ids, steps[row]) for row, ids in enumerate(new)]

    with torch.inference_mode():
        for batch_number, batch in enumerate(length_buckets([len(e) for e in encoded], max_batch, 1 << 30)):
            torch.manual_seed(seed + batch_number)
            new = halving_on_oom(run, batch, len(batch))  # OOM: halve the batch and retry
            for (ids, steps), index in zip(new, batch, strict=True):
                if stop_at_eos and eos is not None and eos in ids:
                    ids = ids[: ids.index(eos)]
                while ids and ids[-1] == pad and stop_at_eos:
                    ids = ids[:-1]
                results[index] = ids
                if steps is not None:
                    logprobs[index] = steps[: len(ids)]
    return results, logprobs if keep_logprobs else []


def generate(model: nn.Module, tokenizer: Any, prompts: Sequence[str], **kwargs: Any) -> list[str]:
    """Generated text per prompt (see :func:`generate_ids` for the options)."""
    return [
        tokenizer.decode(ids, skip_special_tokens=True)
        for ids in generate_ids(model, tokenizer, prompts, **kwargs)
    ]
