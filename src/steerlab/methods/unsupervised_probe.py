"""What MELBO and power iteration share: the config fields, the source/target layers, the source prompts,
and :class:`TargetProbe` (target-layer activations as a function of a bias added at the source layer)."""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from steerlab.activations import chat_prompts, select_layers
from steerlab.models import decoder_layers, model_device, num_layers
from steerlab.progress import report
from steerlab.scoring import encode, pad_left

_logger = logging.getLogger("steerlab.methods.unsupervised")


class _StopAtTarget(Exception):
    """Raised once the target layer ran: later blocks and the LM head are not needed."""


@dataclass
class UnsupervisedConfig:
    """source_layer: where the bias is added (the block's output, i.e. after its MLP); None = depth // 4.
    target_layer: whose activations it should change; None = n_layers - 8, clipped above the source.
    n_prompts: prompts (the behaviour's questions, else steerlab's pool); token_positions: last T tokens.
    radius: bias norm R; None = chosen automatically (see each method).
    prompts: the source prompts themselves (user turns; n_prompts is then ignored), under ``system``;
    None = the behaviour's questions. unit_norm: save every vector at norm 1 (R still sets the training
    scale), so a fixed coefficient means the same for every vector and method."""

    source_layer: int | None = None
    target_layer: int | None = None
    n_prompts: int = 4
    token_positions: int = 2
    n_vectors: int = 8
    radius: float | None = None
    positions: str = "all"
    prompts: tuple[str, ...] | None = None
    system: str | None = None
    unit_norm: bool = False


def source_target(model: nn.Module, config: UnsupervisedConfig) -> tuple[int, int]:
    """The (source, target) layer indices `config` asks for, defaulted and checked (target after source)."""
    n = num_layers(model)
    source = select_layers(n, [config.source_layer])[0] if config.source_layer is not None else max(0, n // 4)
    if config.target_layer is not None:
        target = select_layers(n, [config.target_layer])[0]
    else:
        target = min(max(n - 8, source + 1), n - 1)
    if target <= source:
        raise ValueError(
            f"target layer {target} must come after source layer {source} (model has {n} layers)"
        )
    return source, target


def unsupervised_prompts(
    tokenizer: Any,
    behavior: Any,
    n_prompts: int,
    seed: int,
    prompts: tuple[str, ...] | None = None,
    system: str | None = None,
) -> list[str]:
    """The given `prompts`, else `n_prompts` user questions (the behaviour's, else the built-in pool);
    chat-formatted under `system` (None: no system turn)."""
    from steerlab.behaviors import builtin_questions

    if prompts is not None:
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r}")
        return chat_prompts(tokenizer, [(system, prompt, "") for prompt in prompts]).texts
    if n_prompts < 1:
        raise ValueError(f"n_prompts must be >= 1, got {n_prompts}")
    pool = (
        list(behavior.questions) if behavior is not None and behavior.questions else list(builtin_questions())
    )
    random.Random(seed).shuffle(pool)
    return chat_prompts(tokenizer, [(system, question, "") for question in pool[:n_prompts]]).texts


class TargetProbe:
    """Activations at the target layer's last T tokens as a function of a bias added at the source layer.

    ``run(theta)`` takes theta [d] (same bias for every prompt) or [k, d] (bias i for the i-th copy of
    the prompt batch, so k biases are evaluated in one pass) and returns [copies * prompts, T, d].
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        prompts: list[str],
        source: int,
        target: int,
        tokens: int,
        twice_differentiable: bool = False,
    ):
        encoded = encode(tokenizer, prompts)
        shortest = min(len(ids) for ids in encoded)
        if tokens < 1 or tokens > shortest:
            raise ValueError(
                f"token_positions must be in 1..{shortest} (the shortest prompt's length), got {tokens}"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.input_ids, self.mask = pad_left(encoded, pad, model_device(model))
        self.model, self.source, self.target, self.tokens = model, source, target, tokens
        self.n_prompts = len(prompts)
        self.twice_differentiable = twice_differentiable

    def run(self, theta: torch.Tensor) -> torch.Tensor:
        copies = 1 if theta.dim() == 1 else theta.shape[0]
        bias = (
            theta.reshape(copies, 1, 1, -1)
            .expand(copies, self.n_prompts, 1, -1)
            .reshape(copies * self.n_prompts, 1, -1)
        )
        input_ids, mask = self.input_ids.repeat(copies, 1), self.mask.repeat(copies, 1)
        blocks = decoder_layers(self.model)
        found: dict[str, torch.Tensor] = {}

        def add_bias(_m: nn.Module, _i: Any, output: Any) -> Any:
            if isinstance(output, torch.Tensor):
                return output + bias.to(output.dtype)
            return (output[0] + bias.to(output[0].dtype), *output[1:])

        def read(_m: nn.Module, _i: Any, output: Any) -> None:
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            found["z"] = hidden[:, -self.tokens :, :]
            raise _StopAtTarget

        handles = [
            blocks[self.source].register_forward_hook(add_bias),
            blocks[self.target].register_forward_hook(read),
        ]
        try:
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            # power iteration differentiates a gradient: only the math attention kernel supports that
            kernel = sdpa_kernel(SDPBackend.MATH) if self.twice_differentiable else contextlib.nullcontext()
            with kernel:
                self.model(
                    input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
                )
        except _StopAtTarget:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return found["z"].float()

    def source_norm(self) -> float:
        """Median norm of the source layer's output over real (non-pad) tokens: the natural scale of R."""
        blocks = decoder_layers(self.model)
        found: dict[str, torch.Tensor] = {}

        def read(_m: nn.Module, _i: Any, output: Any) -> None:
            found["h"] = output if isinstance(output, torch.Tensor) else output[0]
            raise _StopAtTarget

        handle = blocks[self.source].register_forward_hook(read)
        position_ids = (self.mask.cumsum(-1) - 1).clamp(min=0)
        try:
            with torch.no_grad():
                self.model(
                    input_ids=self.input_ids,
                    attention_mask=self.mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
        except _StopAtTarget:
            pass
        finally:
            handle.remove()
        norms = found["h"].float().norm(dim=-1)[self.mask.bool()]
        return float(norms.median())


def log_progress(message: str) -> None:
    """A progress line for the unsupervised fits (debug log and the progress reporter)."""
    _logger.debug(message)
    report("unsupervised", message=message)


def open_probe(
    model: nn.Module,
    tokenizer: Any,
    behavior: Any,
    config: UnsupervisedConfig,
    seed: int,
    twice_differentiable: bool = False,
) -> tuple[TargetProbe, list[str]]:
    """The probe a fit trains against (source/target layers and prompts as `config` asks) and its prompts."""
    source, target = source_target(model, config)
    prompts = unsupervised_prompts(tokenizer, behavior, config.n_prompts, seed, config.prompts, config.system)
    probe = TargetProbe(
        model, tokenizer, prompts, source, target, config.token_positions, twice_differentiable
    )
    return probe, prompts
