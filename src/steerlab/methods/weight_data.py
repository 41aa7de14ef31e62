"""Contrast data for weight steering: responses sampled under each persona, cached on disk as jsonl.

For every question of a behaviour the model answers once (or n times) under the positive persona and
once under the negative persona, as a system prompt. Raw generations are cached under a key of model,
tokenizer, behaviour hash, seed and generation settings, so a rerun (or another adapter family on the
same model and behaviour) skips generation. Filters run at load time, so changing them never
regenerates: they drop empty or degenerate responses (heavy repetition) and identical pairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steerlab.atomic import write_atomic
from steerlab.behaviors import Behavior, contrast_items
from steerlab.chat import format_chat
from steerlab.models import model_info
from steerlab.paths import cache_dir
from steerlab.progress import report
from steerlab.scoring import generate_ids

CACHE_FORMAT = 1


@dataclass(frozen=True)
class GenerationSettings:
    """What is sampled: these settings (with model, behaviour and seed) form the cache key.

    The batch size is part of it: sampling is seeded per batch, so another batch size draws other
    (equally distributed) responses. One batch of 64 samples 64 questions ~1.2x faster than four of 16 on
    a CPU (per-step overhead and weight reads are shared; benchmarks/ws_extract_time.py), hence the default.
    """

    n_questions: int | None = 64
    samples_per_question: int = 1
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.n_questions is not None and self.n_questions < 1:
            raise ValueError(f"n_questions must be >= 1 (or None for the whole pool), got {self.n_questions}")
        if self.samples_per_question < 1:
            raise ValueError(f"samples_per_question must be >= 1, got {self.samples_per_question}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"generation batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class ResponseFilter:
    """Which generated pairs to keep; `enabled=False` keeps everything (tests on random tiny models)."""

    enabled: bool = True
    min_words: int = 3
    max_repeated_trigram_fraction: float = 0.5


@dataclass(frozen=True)
class ContrastPair:
    """One question answered under both personas (token ids are the model's own, text for reading)."""

    question: str
    system_pos: str
    system_neg: str
    pos_ids: tuple[int, ...]
    neg_ids: tuple[int, ...]
    pos_text: str
    neg_text: str
    pos_finished: bool
    neg_finished: bool


@dataclass
class ContrastSet:
    """The kept pairs, where they are cached, and how many each filter dropped."""

    pairs: list[ContrastPair]
    path: Path
    key: str
    from_cache: bool
    generated: int
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": str(self.path),
            "from_cache": self.from_cache,
            "generated_pairs": self.generated,
            "kept_pairs": len(self.pairs),
            "dropped": dict(self.dropped),
        }


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap hash of a few weight values, so two models sharing a name (random tiny ones) do not share a cache."""
    digest = hashlib.sha256()
    parameters = list(model.parameters())
    for parameter in (parameters[0], parameters[len(parameters) // 2], parameters[-1]):
        sample = parameter.detach().flatten()[:256].float().cpu()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def contrast_key(
    model: nn.Module, tokenizer: Any, behavior: Behavior, seed: int, settings: GenerationSettings
) -> str:
    """Cache key (24 hex chars) of everything that decides what generation produces."""
    info = model_info(model)
    content = {
        "format": CACHE_FORMAT,
        "model_id": info.model_id,
        "revision": info.revision,
        "weights": weights_fingerprint(model),
        "tokenizer": [getattr(tokenizer, "name_or_path", ""), len(tokenizer)],
        "behavior": behavior.name,
        "behavior_hash": behavior.data_hash(),
        "seed": seed,
        # batch_size too: each generation batch draws from its own seed, so it decides the samples
        "settings": asdict(settings),
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def contrast_path(key: str) -> Path:
    return cache_dir() / "contrast" / f"{key}.jsonl"


def _questions(behavior: Behavior, settings: GenerationSettings, seed: int) -> list[tuple[str, str, str]]:
    """(question, positive persona, negative persona), balanced over persona paraphrases."""
    items = contrast_items(behavior, seed=seed, use_suffixes=False)
    if settings.n_questions is not None:
        items = items[: settings.n_questions]
    rows = [(item.user, item.system_pos, item.system_neg) for item in items]
    return [row for row in rows for _ in range(settings.samples_per_question)]


def _generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationSettings,
    seed: int,
    desc: str,
) -> list[list[int]]:
    """Sampled continuations in input order, batch by batch with a progress bar (sorted by length)."""
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[list[int]] = [[] for _ in prompts]
    batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    for number, batch in enumerate(batches):
        report(desc, number, len(batches), "batches")
        outputs = generate_ids(
            model,
            tokenizer,
            [prompts[i] for i in batch],
            max_new_tokens=settings.max_new_tokens,
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed * 100_003 + number * 1_009,
            max_batch=settings.batch_size,
        )
        for index, ids in zip(batch, outputs, strict=True):
            results[index] = ids
    return results


def _write_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def _read(path: Path) -> list[ContrastPair]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
            record["pos_ids"], record["neg_ids"] = tuple(record["pos_ids"]), tuple(record["neg_ids"])
            pairs.append(ContrastPair(**record))
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise ValueError(
                f"contrast cache {path} line {number} is malformed ({error}); delete the file to regenerate"
            ) from error
    return pairs


def generate_contrast(
    model: nn.Module,
    tokenizer: Any,
    behavior: Behavior,
    settings: GenerationSettings | None = None,
    *,
    seed: int = 0,
    response_filter: ResponseFilter | None = None,
    use_cache: bool = True,
) -> ContrastSet:
    """Sample (or load from the cache) responses under each persona and filter them into pairs."""
    settings = settings or GenerationSettings()
    if not behavior.questions:
        raise ValueError(
            f"behaviour {behavior.name!r} has no questions; weight steering needs a question pool to sample answers to"
        )
    key = contrast_key(model, tokenizer, behavior, seed, settings)
    path = contrast_path(key)
    from_cache = use_cache and path.is_file()
    if from_cache:
        raw = _read(path)
    else:
        raw = _sample(model, tokenizer, behavior, settings, seed)
        _write_atomic(path, [_record(pair) for pair in raw])
    kept, dropped = filter_pairs(raw, response_filter or ResponseFilter())
    return ContrastSet(
        pairs=kept, path=path, key=key, from_cache=from_cache, generated=len(raw), dropped=dropped
    )


def _sample(
    model: nn.Module, tokenizer: Any, behavior: Behavior, settings: GenerationSettings, seed: int
) -> list[ContrastPair]:
    rows = _questions(behavior, settings, seed)
    pos_prompts = [format_chat(tokenizer, question, system=pos) for question, pos, _ in rows]
    neg_prompts = [format_chat(tokenizer, question, system=neg) for question, _, neg in rows]
    pos = _generate(model, tokenizer, pos_prompts, settings, seed, f"contrast {behavior.name} +")
    neg = _generate(model, tokenizer, neg_prompts, settings, seed + 1, f"contrast {behavior.name} -")
    pairs = []
    for (question, system_pos, system_neg), pos_ids, neg_ids in zip(rows, pos, neg, strict=True):
        pairs.append(
            ContrastPair(
                question=question,
                system_pos=system_pos,
                system_neg=system_neg,
                pos_ids=tuple(pos_ids),
                neg_ids=tuple(neg_ids),
                pos_text=tokenizer.decode(pos_ids, skip_special_tokens=True),
                neg_text=tokenizer.decode(neg_ids, skip_special_tokens=True),
                pos_finished=len(pos_ids) < settings.max_new_tokens,
                neg_finished=len(neg_ids) < settings.max_new_tokens,
            )
        )
    return pairs


def _record(pair: ContrastPair) -> dict[str, Any]:
    record = asdict(pair)
    record["pos_ids"], record["neg_ids"] = list(pair.pos_ids), list(pair.neg_ids)
    return record


def degenerate_reason(text: str, ids: Sequence[int], response_filter: ResponseFilter) -> str | None:
    """Why a response is unusable ('empty', 'short', 'repetitive'), or None when it is fine."""
    if not ids or not text.strip():
        return "empty"
    words = text.split()
    if len(words) < response_filter.min_words:
        return "short"
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) >= 4:
        repeated = 1.0 - len(set(trigrams)) / len(trigrams)
        if repeated > response_filter.max_repeated_trigram_fraction:
            return "repetitive"
    return None


def filter_pairs(
    pairs: Sequence[ContrastPair], response_filter: ResponseFilter
) -> tuple[list[ContrastPair], dict[str, int]]:
    """Keep pairs whose two responses are both usable and differ; count drops by reason."""
    dropped = {"empty": 0, "short": 0, "repetitive": 0, "identical": 0}
    kept = []
    for pair in pairs:
        if pair.pos_ids == pair.neg_ids:
            dropped["identical"] += 1
            continue
        if response_filter.enabled:
            reason = degenerate_reason(pair.pos_text, pair.pos_ids, response_filter) or degenerate_reason(
                pair.neg_text, pair.neg_ids, response_filter
            )
            if reason is not None:
                dropped[reason] += 1
                continue
        elif not pair.pos_ids or not pair.neg_ids:
            dropped["empty"] += 1
            continue
        kept.append(pair)
    return kept, dropped


def split_pairs(
    pairs: Sequence[ContrastPair], val_fraction: float, seed: int
) -> tuple[list[ContrastPair], list[ContrastPair]]:
    """A seeded (train, validation) split by question, identical for both poles."""
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(round(len(pairs) * val_fraction)) if len(pairs) > 1 else 0
    n_val = min(n_val, len(pairs) - 1)
    val = [pairs[i] for i in order[:n_val]]
    train = [pairs[i] for i in order[n_val:]]
    return train, val
