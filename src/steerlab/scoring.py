"""Batched forward passes: next-token choice log-probs, generation, teacher-forced token KL.

Prompts are already-formatted strings (see :mod:`steerlab.chat`). Batches are bucketed by length
(left padding, explicit position ids), the tokens every prompt of a batch starts with run once on a KV
cache (:mod:`steerlab.prefix_kv`), the LM head runs on the last position only, and results come back in
input order. Scoring knows nothing about what the scores mean or about interventions: a
caller that wants a steered score wraps the call in ``intervention.apply(model, c)``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from steerlab.models import model_device, text_config
from steerlab.placement import fit_batch_size, halving_on_oom
from steerlab.prefix_kv import PrefixCache, common_prefix_length, prefix_clusters, shared_groups, with_head
from steerlab.reexport import reexporter
from steerlab.row_coefficients import batch_rows

ChoiceSpec = Sequence[str] | dict[str, Sequence[str]]


class CaseSensitive(str):
    """A choice word matched with its case kept (whitespace still ignored): ``CaseSensitive("A")`` takes the
    letter tokens "A" and " A" but not the article "a". Plain words match case-insensitively."""


def letters(*names: str) -> dict[str, Sequence[str]]:
    """Choice groups for answer letters, matched case-sensitively (``letters("A", "B")``)."""
    return {name: (CaseSensitive(name),) for name in names}


CHOICE_GROUPS: dict[str, dict[str, Sequence[str]]] = {
    "yes_no": {"Yes": ("Yes",), "No": ("No",)},
    "ab": letters("A", "B"),
    "true_false": {"true": ("true", "1"), "false": ("false", "0")},
    "digits_12": {"1": ("1",), "2": ("2",)},
}
"""Named choice groups; a group's log-prob is the logsumexp over every token of every listed word."""


DEFAULT_MAX_BATCH = 64
CPU_BATCH_TOKENS = 1024
"""Padded tokens per batch on CPU: the activations of ~1k tokens stay in cache between ops; 4k-16k-token
batches ran 1.3-3x slower per token on smollm2-135m (compare with
``benchmarks/scoring_throughput.py --budgets 1024,4096,16384``)."""
ACCELERATOR_BATCH_TOKENS = 8192
"""Padded tokens per batch on cuda/mps, where larger batches keep the device busy."""


def fit_batch_tokens(model: nn.Module, default: int) -> int:
    """The token budget per batch: `default` on CPU/MPS; on CUDA sized from free memory (see placement)."""
    width = int(getattr(text_config(model), "hidden_size", 0) or 0)
    per_token = max(width, 1) * 4 * 24  # a generous working set per token (activations, attention, MLP)
    return max(default, fit_batch_size(default, model_device(model), per_token, ceiling=1 << 20))


def default_batch_tokens(device: torch.device) -> int:
    """The token budget per batch that `score_choices` uses when none is given."""
    return CPU_BATCH_TOKENS if device.type == "cpu" else ACCELERATOR_BATCH_TOKENS


class ChoiceTokenError(ValueError):
    """A choice word that no vocabulary token decodes to."""


# ---------------------------------------------------------------------------------------------- tokens


def _vocab_index(tokenizer: Any, case_sensitive: bool = False) -> dict[str, list[int]]:
    """Map normalised decoded text (stripped; lower-cased unless ``case_sensitive``) -> token ids; built
    once per tokenizer."""
    attribute = "_steerlab_vocab_index_cased" if case_sensitive else "_steerlab_vocab_index"
    cached = getattr(tokenizer, attribute, None)
    if cached is not None:
        return cached
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    index: dict[str, list[int]] = {}
    for token_id, text in enumerate(texts):
        key = text.strip() if case_sensitive else text.strip().lower()
        index.setdefault(key, []).append(token_id)
    setattr(tokenizer, attribute, index)
    return index


def choice_token_ids(tokenizer: Any, word: str) -> list[int]:
    """Every token id that decodes to `word` modulo leading/trailing whitespace and case (case kept for a
    `CaseSensitive` word)."""
    exact = isinstance(word, CaseSensitive)
    ids = _vocab_index(tokenizer, exact).get(word.strip() if exact else word.strip().lower(), [])
    if not ids:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ChoiceTokenError(f"choice word {word!r} matches no single token of tokenizer {name!r}")
    return ids


def resolve_choices(tokenizer: Any, choices: ChoiceSpec | str) -> tuple[list[str], list[list[int]]]:
    """Normalise a choice spec (a CHOICE_GROUPS name, a word list, or name -> words) to names and id lists."""
    if isinstance(choices, str):
        if choices not in CHOICE_GROUPS:
            raise ValueError(f"unknown choice group {choices!r}; known: {sorted(CHOICE_GROUPS)}")
        choices = CHOICE_GROUPS[choices]
    groups = {word: (word,) for word in choices} if not isinstance(choices, dict) else dict(choices)
    if len(groups) < 2:
        raise ValueError(f"need at least two choice groups, got {list(groups)}")
    names, id_lists = [], []
    for name, words in groups.items():
        ids = sorted({i for word in words for i in choice_token_ids(tokenizer, word)})
        names.append(name)
        id_lists.append(ids)
    for a in range(len(id_lists)):
        for b in range(a + 1, len(id_lists)):
            if set(id_lists[a]) & set(id_lists[b]):
                raise ValueError(f"choice groups {names[a]!r} and {names[b]!r} share tokens")
    return names, id_lists


def encode(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of already-formatted prompts, with a BOS token where the tokenizer expects one."""
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    probe = tokenizer("x", add_special_tokens=True)["input_ids"]
    wants_bos = bos is not None and len(probe) > 0 and probe[0] == bos
    if wants_bos:
        encoded = [ids if ids[:1] == [bos] else [bos, *ids] for ids in encoded]
    return [list(ids) for ids in encoded]


def length_buckets(
    lengths: Sequence[int],
    max_batch: int,
    max_tokens: int,
    clusters: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Group indices by sorted length so that each batch has at most max_batch rows and
    max_tokens padded tokens; returns lists of original indices.

    With `clusters` (a partition of the indices), a cluster goes into one batch whenever it fits in one,
    ordered by its longest member: rows that share tokens (:func:`steerlab.prefix_kv.prefix_clusters`)
    then meet in a batch, where those tokens run once."""
    units = [list(c) for c in clusters] if clusters is not None else [[i] for i in range(len(lengths))]
    units.sort(key=lambda unit: max(lengths[i] for i in unit))
    batches: list[list[int]] = []
    current: list[int] = []

    def fits(rows: int, longest: int) -> bool:
        return rows <= max_batch and rows * longest <= max_tokens

    for unit in units:
        longest = max([lengths[i] for i in current] + [lengths[i] for i in unit])
        if current and not fits(len(current) + len(unit), longest):
            batches.append(current)
            current = []
        if fits(len(current) + len(unit), max(lengths[i] for i in unit)) or len(unit) == 1:
            current.extend(unit)
            continue
        for index in sorted(unit, key=lambda i: lengths[i]):  # a cluster too big for one batch
            if current and not fits(len(current) + 1, max(lengths[i] for i in [*current, index])):
                batches.append(current)
                current = []
            current.append(index)
    if current:
        batches.append(current)
    return batches


def pad_left(
    batch: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids.to(device), mask.to(device)


def _accepts(model: nn.Module, argument: str) -> bool:
    cache = model.__dict__.setdefault("_steerlab_forward_args", {})
    if argument not in cache:
        cache[argument] = argument in inspect.signature(model.forward).parameters
    return cache[argument]


def cache_argument(model: nn.Module) -> str | None:
    """The name under which `model.forward` takes a KV cache (it changed across transformers), or None."""
    for name in ("cache", "past_key_values"):
        if _accepts(model, name):
            return name
    return None


def forward_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    last_only: bool = False,
    keep: int | None = None,
    cache: Any = None,
) -> torch.Tensor:
    """Logits [batch, seq, vocab] of a left-padded batch, with position ids that skip padding.

    Only the last `keep` positions (1 with `last_only`) get logits: the LM head is skipped elsewhere.
    With a KV `cache` (see :mod:`steerlab.prefix_kv`) the batch continues the cached tokens: the mask
    covers them too, and position ids continue from them.
    """
    keep = 1 if last_only else keep
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
    kwargs: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "use_cache": cache is not None,
    }
    if cache is not None:
        kwargs[str(cache_argument(model))] = cache
    if _accepts(model, "position_ids"):
        kwargs["position_ids"] = position_ids
    if keep is not None and _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = keep
    with _contiguous_head_input(model) if keep is not None else contextlib.nullcontext():
        logits = model(**kwargs).logits
    return logits[:, -keep:, :] if keep is not None else logits


def _make_contiguous(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


@contextlib.contextmanager
def _contiguous_head_input(model: nn.Module) -> Iterator[None]:
    """Hand the LM head a contiguous input while it runs on the kept positions only.

    transformers slices ``hidden[:, -keep:, :]``, a strided view that ``F.linear`` turns into a
    batched matmul against a broadcast weight: on CPU that head costs ~2x a plain matmul, about 9%
    of smollm2-135m's scoring time (``benchmarks/scoring_throughput.py``).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None  # type: ignore[operator]  # nn.Module.__getattr__ types it Tensor | Module
    handle = head.register_forward_pre_hook(_make_contiguous) if isinstance(head, nn.Module) else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


# ---------------------------------------------------------------------------------------------- choices


@dataclass
class ChoiceScores:
    """Per-row log-probabilities of each choice group at the next token, in input order."""

    names: list[str]
    logprobs: np.ndarray  # [rows, groups], natural log

    @property
    def pmass(self) -> np.ndarray:
        """Total probability on all groups (low mass = the model wanted to say something else)."""
        return np.exp(np.logaddexp.reduce(self.logprobs, axis=1))

    @property
    def logratio(self) -> np.ndarray:
        """log P(first group) - log P(second group)."""
        return self.logprobs[:, 0] - self.logprobs[:, 1]

    def group(self, name: str) -> np.ndarray:
        return self.logprobs[:, self.names.index(name)]


def score_choices(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    choices: ChoiceSpec | str = "yes_no",
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
    share_prefix: bool = True,
) -> ChoiceScores:
    """Next-token log P(group) = logsumexp over the group's tokens, for each prompt.

    Batches hold at most `max_batch` rows and `max_batch_tokens` padded tokens (default: per device,
    see :func:`default_batch_tokens`). `progress`, if given, is called with the number of rows
    finished after each batch. With `share_prefix`, the tokens all prompts of a batch start with run
    once per call (:mod:`steerlab.prefix_kv`); scores agree with full passes to float round-off.
    """
    names, id_lists = resolve_choices(tokenizer, choices)
    encoded = encode(tokenizer, prompts)
    device = model_device(model)
    if max_batch_tokens is None:
        max_batch_tokens = fit_batch_tokens(model, default_batch_tokens(device))
    group_ids = [torch.tensor(ids, device=device) for ids in id_lists]
    out = np.empty((len(encoded), len(names)), dtype=np.float64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    heads = PrefixCache(model, device) if share_prefix else None

    def score(rows: Sequence[int]) -> list[np.ndarray]:
        batch = [encoded[i] for i in rows]
        with batch_rows(rows):  # per-row coefficients (apply_rows) follow the rows into the batch
            logits = last_logits(model, heads, batch, pad, device).float()
        log_z = torch.logsumexp(logits, dim=-1)
        groups = torch.stack([torch.logsumexp(logits[:, ids], dim=-1) for ids in group_ids], dim=1)
        return list((groups - log_z[:, None]).cpu().double().numpy())

    with torch.inference_mode():
        shared = common_prefix_length(encoded) if share_prefix else 0
        clusters = prefix_clusters([e[shared:] for e in encoded]) if share_prefix else None
        lengths = [len(e) - shared for e in encoded]
        for batch in length_buckets(lengths, max_batch, max_batch_tokens, clusters):
            scored: list[np.ndarray] = halving_on_oom(score, batch, len(batch))  # OOM: halve, retry
            out[batch] = np.stack(scored)
            if progress is not None:
                progress(len(batch))
    return ChoiceScores(names=names, logprobs=out)


def last_logits(
    model: nn.Module,
    heads: PrefixCache | None,
    batch: Sequence[Sequence[int]],
    pad: int,
    device: torch.device,
) -> torch.Tensor:
    """Next-token logits [batch, vocab] after each row of `batch` (token ids). With `heads`, the batch's
    shared head runs once, and rows sharing more (:func:`steerlab.prefix_kv.shared_groups`) run that once
    per group; without, or where the cache cannot be shared, one plain forward."""
    head = batch[0][: common_prefix_length(batch)] if heads is not None else []
    suffixes = [ids[len(head) :] for ids in batch]
    groups = shared_groups(suffixes) if heads is not None else None
    grouped = heads.for_groups(head, groups, pad) if heads is not None and groups is not None else None
    if grouped is not None and groups is not None:
        cache, mid_mask = grouped
        input_ids, mask = pad_left(groups.rests, pad, device)
        mask = torch.cat([mid_mask, mask], dim=1)
    else:
        cache = heads.for_batch(head, len(batch)) if heads is not None else None
        input_ids, mask = pad_left(suffixes if cache is not None else batch, pad, device)
        mask = with_head(mask, len(head)) if cache is not None else mask
    return forward_logits(model, input_ids, mask, last_only=True, cache=cache)[:, -1, :]


@contextlib.contextmanager
def no_steer() -> Iterator[None]:
    yield


# Generation and per-option continuation scoring live in their own modules, which import this one; they are
# re-exported here, where users look for scoring, lazily (PEP 562), so any of the modules can be imported
# first without a circular-import error.
_REEXPORTS = {
    "ContinuationScores": "steerlab.continuations",
    "continuation_ids": "steerlab.continuations",
    "score_continuations": "steerlab.continuations",
    "generate": "steerlab.generation",
    "generate_cache_kwarg": "steerlab.generation",
    "generate_ids": "steerlab.generation",
    "continuation_logprobs": "steerlab.token_kl",
    "token_kl": "steerlab.token_kl",
}

if TYPE_CHECKING:
    from steerlab.continuations import ContinuationScores as ContinuationScores
    from steerlab.continuations import continuation_ids as continuation_ids
    from steerlab.continuations import score_continuations as score_continuations
    from steerlab.generation import generate as generate
    from steerlab.generation import generate_cache_kwarg as generate_cache_kwarg
    from steerlab.generation import generate_ids as generate_ids
    from steerlab.token_kl import continuation_logprobs as continuation_logprobs
    from steerlab.token_kl import token_kl as token_kl


__getattr__ = reexporter(__name__, _REEXPORTS)
