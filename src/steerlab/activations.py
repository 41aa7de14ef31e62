"""Batched capture of hidden states at chosen layers (or submodules) and token positions.

Contrastive methods read the output of decoder blocks (the residual stream) at the last non-pad
token of each prompt (CAA, repeng) or averaged over the assistant-response tokens. Prompts are
bucketed by length, left-padded with position ids that skip padding (so a padded row gives the same
activations as the row alone), and each forward pass stops right after the deepest hooked module.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerlab.models import decoder_layers, model_device
from steerlab.progress import throttled
from steerlab.scoring import default_batch_tokens, encode, length_buckets, pad_left

TOKEN_POSITIONS = ("last", "mean_response")
DEFAULT_LAYER_RANGE = (0.2, 0.8)
EDGE_LAYERS = 2
"""Depth-fraction selection never picks the first or the last ``EDGE_LAYERS`` blocks."""


class ActivationError(ValueError):
    """Contrast data or activations that a method cannot use (empty, degenerate, non-finite, bad layer)."""


# ---------------------------------------------------------------------------------------------- layers


def select_layers(
    n_layers: int,
    layers: Sequence[int] | None = None,
    layer_range: Sequence[float] = DEFAULT_LAYER_RANGE,
) -> list[int]:
    """Explicit layer indices (negative counts from the end), or every block whose depth fraction
    ``l / n_layers`` lies in `layer_range`, never the first or last two.

    A model too shallow for that rule (fewer than five blocks) gets its middle block.
    """
    if layers is not None:
        if len(layers) == 0:
            raise ActivationError("layers is an empty list; give at least one layer index or leave it unset")
        chosen = []
        for layer in layers:
            if not isinstance(layer, int) or isinstance(layer, bool):
                raise ActivationError(f"layer {layer!r} is not an integer index")
            if not -n_layers <= layer < n_layers:
                raise ActivationError(
                    f"layer {layer} is out of range for a model with {n_layers} layers (valid: 0..{n_layers - 1})"
                )
            chosen.append(layer % n_layers)
        return sorted(set(chosen))
    if len(layer_range) != 2:
        raise ActivationError(f"layer_range must be (low, high) depth fractions, got {list(layer_range)}")
    low, high = float(layer_range[0]), float(layer_range[1])
    if not 0.0 <= low <= high <= 1.0:
        raise ActivationError(f"layer_range must satisfy 0 <= low <= high <= 1, got ({low}, {high})")
    first = max(math.ceil(low * n_layers - 1e-9), EDGE_LAYERS)
    last = min(math.floor(high * n_layers + 1e-9), n_layers - 1 - EDGE_LAYERS)
    if first <= last:
        return list(range(first, last + 1))
    if n_layers < 2 * EDGE_LAYERS + 1:
        return [n_layers // 2]
    raise ActivationError(
        f"layer_range ({low}, {high}) selects no layer of a {n_layers}-layer model once the first and last "
        f"{EDGE_LAYERS} are excluded; widen it or pass explicit layers"
    )


# ---------------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptSet:
    """Formatted prompts plus, per prompt, how many trailing tokens are the assistant response."""

    texts: list[str]
    response_tokens: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def chat_prompts(tokenizer: Any, rows: Sequence[tuple[str | None, str, str]]) -> PromptSet:
    """Format (system, user, assistant_prefix) rows with the model's chat template.

    The response length is the token count of the full text minus that of the text without prefix.
    """
    from steerlab.chat import format_chat

    texts = [format_chat(tokenizer, user, system, prefix) for system, user, prefix in rows]
    heads = [format_chat(tokenizer, user, system, "") for system, user, _ in rows]
    full_ids, head_ids = encode(tokenizer, texts), encode(tokenizer, heads)
    counts = [max(0, len(f) - len(h)) for f, h in zip(full_ids, head_ids, strict=True)]
    return PromptSet(texts, counts)


def prompts_hash(*prompt_sets: PromptSet) -> str:
    """sha256 (12 hex chars) of the exact prompt texts, recorded as the data hash of an intervention."""
    digest = hashlib.sha256()
    for prompt_set in prompt_sets:
        for text in prompt_set.texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------- capture


class _StopForward(Exception):
    """Raised by the last hook of a pass: nothing after the deepest hooked module is needed."""


def _hidden(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _reduce(hidden: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor, position: str) -> torch.Tensor:
    """[batch, seq, d] -> [batch, d] at the last non-pad token or averaged over the last `counts` tokens."""
    if position == "last":
        return hidden[:, -1, :]
    seq = hidden.shape[1]
    index = torch.arange(seq, device=hidden.device)
    take = (index[None, :] >= seq - counts[:, None]) & mask.bool()
    weights = take.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def capture_modules(
    model: nn.Module,
    tokenizer: Any,
    prompts: PromptSet | Sequence[str],
    modules: Mapping[Any, nn.Module],
    *,
    position: str = "last",
    max_batch: int = 32,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[Any, torch.Tensor]:
    """Outputs of each named module for each prompt, reduced over tokens: key -> float32 [n_prompts, d] on cpu.

    `position` is 'last' (last non-pad token; prompts are left-padded) or 'mean_response' (mean over the
    assistant-response tokens, at least the last token).
    """
    if position not in TOKEN_POSITIONS:
        raise ActivationError(f"token position must be one of {TOKEN_POSITIONS}, got {position!r}")
    if not modules:
        raise ActivationError("no modules to capture")
    if not isinstance(prompts, PromptSet):
        prompts = PromptSet(list(prompts), [1] * len(prompts))
    if len(prompts) == 0:
        raise ActivationError("the prompt set is empty: nothing to capture activations from")
    encoded = encode(tokenizer, prompts.texts)
    device = model_device(model)
    if max_batch_tokens is None:
        max_batch_tokens = default_batch_tokens(device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keys = list(modules)
    out: dict[Any, torch.Tensor] = {}
    state: dict[str, Any] = {}

    def make_hook(key: Any) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            reduced = _reduce(_hidden(output), state["mask"], state["counts"], position).float()
            state["got"][key] = reduced
            if len(state["got"]) == len(keys):
                raise _StopForward

        return hook

    handles = [modules[key].register_forward_hook(make_hook(key)) for key in keys]
    try:
        with torch.inference_mode():
            for batch in length_buckets([len(e) for e in encoded], max_batch, max_batch_tokens):
                input_ids, mask = pad_left([encoded[i] for i in batch], pad, device)
                counts = torch.tensor([max(1, prompts.response_tokens[i]) for i in batch], device=device)
                state.update(mask=mask, counts=counts, got={})
                position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
                with contextlib.suppress(_StopForward):
                    model(
                        input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
                    )
                for key in keys:
                    if key not in state["got"]:
                        raise ActivationError(f"module {key!r} did not run during the forward pass")
                    rows = state["got"][key].cpu()
                    if key not in out:
                        out[key] = torch.empty(len(prompts), rows.shape[-1], dtype=torch.float32)
                    out[key][batch] = rows
                if progress is not None:
                    progress(len(batch))
    finally:
        for handle in handles:
            handle.remove()
    for key, values in out.items():
        bad = ~torch.isfinite(values).all(dim=-1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()
            raise ActivationError(
                f"non-finite activations (NaN or inf) at {_describe(key)} for prompt rows {rows[:10]}"
                f"{' ...' if len(rows) > 10 else ''}; first such prompt: {prompts.texts[rows[0]][:120]!r}"
            )
    return out


def _describe(key: Any) -> str:
    return f"layer {key}" if isinstance(key, int) else f"module {key!r}"


def capture_layers(
    model: nn.Module,
    tokenizer: Any,
    prompts: PromptSet | Sequence[str],
    layers: Sequence[int],
    **kwargs: Any,
) -> dict[int, torch.Tensor]:
    """Decoder-block outputs (residual stream) at `layers`: layer -> float32 [n_prompts, hidden]."""
    blocks = decoder_layers(model)
    for layer in layers:
        if not 0 <= layer < len(blocks):
            raise ActivationError(f"layer {layer} is out of range for a model with {len(blocks)} layers")
    return capture_modules(
        model, tokenizer, prompts, {int(layer): blocks[layer] for layer in layers}, **kwargs
    )


# ---------------------------------------------------------------------------------------------- contrast


@dataclass
class ContrastActivations:
    """Paired activations: row i of `positive[l]` and `negative[l]` come from the same contrast item."""

    positive: dict[Any, torch.Tensor]
    negative: dict[Any, torch.Tensor]
    token_position: str
    data_hash: str
    model_type: str | None = None
    #: where the pairs came from, recorded with the intervention (e.g. {"contrast_source": "personas"})
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        return next(iter(self.positive.values())).shape[0]

    def differences(self, key: Any) -> torch.Tensor:
        """Paired differences h+ - h- at one layer/module, [n_pairs, d]; refuses an all-zero contrast."""
        diffs = self.positive[key] - self.negative[key]
        if not bool(diffs.abs().amax() > 0):
            raise ActivationError(
                f"degenerate contrast at {_describe(key)}: every positive/negative difference is zero "
                "(do the two poles' prompts differ?)"
            )
        return diffs


def contrast_prompt_sets(tokenizer: Any, items: Sequence[Any]) -> tuple[PromptSet, PromptSet]:
    """Positive and negative prompts of contrast items: anything with ``prompt_row(pole) -> (system, user,
    assistant_prefix)`` (persona pairs: the persona differs; lock-in scenarios: the completion differs)."""
    if len(items) == 0:
        raise ActivationError("the contrast set is empty: a contrastive method needs at least one pair")
    positive = chat_prompts(tokenizer, [it.prompt_row("positive") for it in items])
    negative = chat_prompts(tokenizer, [it.prompt_row("negative") for it in items])
    return positive, negative


def capture_contrast(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[Any],
    modules: Mapping[Any, nn.Module],
    *,
    position: str = "last",
    max_batch: int = 32,
    show_progress: bool = True,
) -> ContrastActivations:
    """Capture both poles of `items` (ContrastItems) in one batched sweep; positives and negatives
    of similar length share batches."""
    positive, negative = contrast_prompt_sets(tokenizer, items)
    both = PromptSet(positive.texts + negative.texts, positive.response_tokens + negative.response_tokens)
    progress = throttled("capturing contrast activations", len(both), "prompts") if show_progress else None
    captured = capture_modules(
        model, tokenizer, both, modules, position=position, max_batch=max_batch, progress=progress
    )
    n = len(items)
    return ContrastActivations(
        positive={key: values[:n] for key, values in captured.items()},
        negative={key: values[n:] for key, values in captured.items()},
        token_position=position,
        data_hash=prompts_hash(positive, negative),
        model_type=getattr(model.config, "model_type", None),
    )
