"""Training one PEFT adapter on (question -> response) pairs, on a deep copy of the caller's model.

The persona is removed at training time: the prompt is the user turn alone in the model's chat
format, and the loss covers the response tokens only (plus EOS where the response ended). The
checkpoint with the lowest validation loss (checked after each epoch) is kept.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.chat import format_chat
from steerlab.methods.weight_config import WeightSteeringConfig
from steerlab.methods.weight_data import ContrastPair
from steerlab.methods.weight_prefix import FrozenPrefix, compute_prefix
from steerlab.models import decoder_layer_prefix, first_block, linear_modules, num_layers
from steerlab.peft_compat import peft_call
from steerlab.progress import report
from steerlab.scoring import encode

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """Prompt ids (no loss) followed by response ids (loss)."""

    prompt: tuple[int, ...]
    response: tuple[int, ...]

    @property
    def ids(self) -> tuple[int, ...]:
        return self.prompt + self.response


@dataclass
class TrainedAdapter:
    """A PEFT-wrapped deep copy of the base model after training, with what is needed to read its delta."""

    peft_model: Any
    family: str
    targets: list[str]
    history: list[dict[str, float]]
    best_epoch: int
    initial_factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "history": self.history}


def layer_indices(n_layers: int, layer_range: tuple[float, float]) -> list[int]:
    """Decoder blocks whose index lies in [round(low * L), round(high * L)), at least one."""
    start = min(int(round(layer_range[0] * n_layers)), n_layers - 1)
    stop = max(int(round(layer_range[1] * n_layers)), start + 1)
    return list(range(start, min(stop, n_layers)))


def target_modules(model: nn.Module, config: WeightSteeringConfig) -> tuple[list[str], list[str]]:
    """Full names of the adapted linear modules, and the subset that are MLP inputs (IA3's feedforward)."""
    prefix = decoder_layer_prefix(model)
    targets: list[str] = []
    feedforward: list[str] = []
    available: set[str] = set()
    for layer in layer_indices(num_layers(model), config.layer_range):
        roles = linear_modules(model, layer)
        available |= set(roles)
        for role in config.target_roles:
            if role in roles:
                name = f"{prefix}.{layer}.{roles[role]}"
                targets.append(name)
                if role == "down":
                    feedforward.append(name)
    if not targets:
        raise ValueError(
            f"none of target_roles {list(config.target_roles)} exists in {type(model).__name__}; "
            f"its blocks have {sorted(available)}"
        )
    modules = {name: model.get_submodule(name) for name in targets}
    not_linear = [name for name, module in modules.items() if not isinstance(module, nn.Linear)]
    if not_linear:
        raise ValueError(f"weight steering adapts nn.Linear modules only; these are not: {not_linear[:3]}")
    config.check_shapes(modules)
    return targets, feedforward


def build_examples(tokenizer: Any, pairs: Sequence[ContrastPair], pole: str) -> list[Example]:
    """(user turn, no persona) -> the pole's response, with EOS when the response had ended."""
    if not pairs:
        return []
    prompts = encode(tokenizer, [format_chat(tokenizer, pair.question) for pair in pairs])
    eos = tokenizer.eos_token_id
    examples = []
    for pair, prompt in zip(pairs, prompts, strict=True):
        ids = pair.pos_ids if pole == "positive" else pair.neg_ids
        finished = pair.pos_finished if pole == "positive" else pair.neg_finished
        response = tuple(ids) + ((eos,) if finished and eos is not None else ())
        examples.append(Example(tuple(prompt), response))
    return examples


def _collate(
    batch: Sequence[Example], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids (responses end every row), attention mask, and labels IGNORE outside the response."""
    width = max(len(e.prompt) + len(e.response) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        full = list(example.prompt) + list(example.response)
        ids[row, width - len(full) :] = torch.tensor(full)
        mask[row, width - len(full) :] = 1
        if example.response:
            labels[row, width - len(example.response) :] = torch.tensor(example.response, dtype=torch.long)
    return ids.to(device), mask.to(device), labels.to(device)


def _loss(
    model: nn.Module,
    batch: Sequence[Example],
    pad: int,
    device: torch.device,
    tail_logits: bool,
    prefix: FrozenPrefix | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over response tokens, and how many tokens it covers.

    Rows are left-padded so every response ends the row; with `tail_logits` the LM head runs only on
    the last (longest response + 1) positions, which saves most of the logits' memory and time. With
    `prefix` (inside its `reusing` block) the frozen blocks below the first adapted one are skipped.
    """
    ids, mask, labels = _collate(batch, pad, device)
    if prefix is not None:
        prefix.feed([e.ids for e in batch], ids.shape[1])
    keep = min(ids.shape[1], max(len(e.response) for e in batch) + 1)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
    kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
    if tail_logits:
        kwargs["logits_to_keep"] = keep
    logits = model(**kwargs).logits[:, -keep:]
    targets = labels[:, ids.shape[1] - keep + 1 :]
    total = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    return total, int((targets != IGNORE).sum())


def _validation_loss(
    model: nn.Module,
    examples: Sequence[Example],
    batch_size: int,
    pad: int,
    device: torch.device,
    tail_logits: bool,
    prefix: FrozenPrefix | None = None,
) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            loss, n = _loss(model, examples[start : start + batch_size], pad, device, tail_logits, prefix)
            total, count = total + float(loss), count + n
    return total / max(count, 1)


def _schedule(total_steps: int, warmup: int) -> Any:
    """Linear warmup, then linear decay towards zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


@dataclass
class InitialAdapter:
    """A freshly initialised PEFT wrapper of a deep copy of the base model, before any training step.

    Both poles start from the same one (same seed), so `fit_weight_steering` builds it once when the
    family's initialisation is costly (PiSSA's exact SVD of every target weight) and trains copies.
    """

    peft_model: Any
    targets: list[str]
    initial_factors: dict[str, tuple[torch.Tensor, torch.Tensor]]


def initial_adapter(model: nn.Module, config: WeightSteeringConfig, seed: int) -> InitialAdapter:
    """Wrap a deep copy of `model` in a new adapter of `config.family`, initialised under `seed`."""
    from peft import get_peft_model

    targets, feedforward = target_modules(model, config)
    torch.manual_seed(seed)
    with peft_call():
        peft_model = get_peft_model(copy.deepcopy(model), config.peft_config(targets, feedforward))
    initial = _initial_factors(peft_model, targets) if config.family == "pissa" else {}
    return InitialAdapter(peft_model, targets, initial)


def _frozen_prefix(
    peft_model: Any,
    targets: list[str],
    examples: Sequence[Example],
    batch_size: int,
    pad: int,
    device: torch.device,
) -> FrozenPrefix | None:
    """The stored input of the first adapted block for `examples`, or None (full forwards) when the
    model cannot be split there or the split does not reproduce the full forward on two rows."""
    sequences = [e.ids for e in examples]
    layer = first_block(peft_model.base_model.model, targets)
    prefix = compute_prefix(peft_model, sequences, layer, batch_size, pad, device)
    shortest = sorted(set(sequences), key=len)[:2]  # the check costs two short forwards
    if prefix is None or not prefix.check(peft_model, shortest, pad, device):
        return None
    return prefix


def train_adapter(
    model: nn.Module,
    tokenizer: Any,
    train: Sequence[Example],
    val: Sequence[Example],
    config: WeightSteeringConfig,
    seed: int,
    desc: str = "train",
    *,
    start: InitialAdapter | None = None,
    reuse_prefix: bool = True,
) -> TrainedAdapter:
    """Train one adapter of `config.family` on a deep copy of `model` (the caller's model is untouched).

    `start` (from `initial_adapter` with the same seed) is copied instead of initialising a new adapter,
    and stays untouched. With `reuse_prefix` the frozen blocks below the first adapted one run once per
    example instead of at every step (same losses to float round-off; see `weight_prefix`).
    """
    if not train:
        raise ValueError("weight steering needs at least one training example per pole")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tail_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
    if start is None:
        start = initial_adapter(model, config, seed)
        peft_model = start.peft_model
    else:
        peft_model = copy.deepcopy(start.peft_model)
    targets = start.targets
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total_steps, max(1, math.ceil(config.warmup_ratio * total_steps)))
    )
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best: tuple[float, int, list[torch.Tensor]] | None = None
    peft_model.eval()  # no dropout: training stays deterministic under the seed
    prefix = None
    if reuse_prefix:
        prefix = _frozen_prefix(peft_model, targets, [*train, *val], config.batch_size, pad, device)
    step = 0
    with prefix.reusing(peft_model) if prefix is not None else contextlib.nullcontext():
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(len(train), generator=generator).tolist()
            running, tokens = 0.0, 0
            for first in range(0, len(order), config.batch_size):
                batch = [train[i] for i in order[first : first + config.batch_size]]
                loss_sum, n = _loss(peft_model, batch, pad, device, tail_logits, prefix)
                (loss_sum / max(n, 1)).backward()
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                running, tokens = running + float(loss_sum.detach()), tokens + n
                step += 1
                if config.progress and (step % max(1, total_steps // 20) == 0 or step == total_steps):
                    loss = running / max(tokens, 1)
                    report(desc, step, total_steps, "steps", f"epoch {epoch}, loss {loss:.3f}")
            record = {"epoch": epoch, "train_loss": running / max(tokens, 1)}
            if val:
                record["val_loss"] = _validation_loss(
                    peft_model, val, config.batch_size, pad, device, tail_logits, prefix
                )
            history.append(record)
            score = record.get("val_loss", -epoch)  # no validation split: keep the last epoch
            if best is None or score < best[0]:
                best = (score, epoch, [p.detach().clone() for p in trainable])
    assert best is not None
    with torch.no_grad():
        for parameter, saved in zip(trainable, best[2], strict=True):
            parameter.copy_(saved)
    peft_model.requires_grad_(False)
    return TrainedAdapter(peft_model, config.family, targets, history, best[1], start.initial_factors)


def _initial_factors(peft_model: Any, targets: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """PiSSA's initial (scaled B0, A0) per module: the part of W moved into the adapter at init."""
    factors = {}
    for name in targets:
        layer = peft_model.base_model.model.get_submodule(name)
        scale = float(layer.scaling["default"])
        factors[name] = (
            layer.lora_B["default"].weight.detach().clone() * scale,
            layer.lora_A["default"].weight.detach().clone(),
        )
    return factors
