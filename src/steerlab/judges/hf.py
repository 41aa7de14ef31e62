"""The `hf` judge: a local judge model in-process (``hf:smollm2-135m``, a hub id or a local directory).

The score is the probability-weighted mean over the integers 0-100 whatever the tokenizer (digit by digit
or whole numbers): after one forward pass over the judge prompt, the next-token distributions after every
proper prefix of a candidate reply ("1" before "15", "10" before "100") come from one small batch on the
prompt's KV cache. P(n) = P(tokens of n) x P(the number stops there), the stop probability taken where a
longer candidate continues n (so "1" is not counted as "15") and as 1 after a leaf (a further digit would
leave 0-100). The mass is the sum of P(n); a reply with mass below ``min_mass`` is unscorable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steerlab.judges.base import DEFAULT_MIN_MASS, JudgeScore

__all__ = ["HFJudge", "HFJudgeConfig"]

LOG = logging.getLogger("steerlab.judges.hf")
MAX_SCORE = 100


@dataclass(frozen=True)
class HFJudgeConfig:
    """``model``: any spec `steerlab.models.load_model` accepts; ``device`` / ``dtype`` as there."""

    model: str = "smollm2-135m"
    device: str | None = None
    dtype: str | None = None
    min_mass: float = DEFAULT_MIN_MASS
    #: The judge reply's opening; "Score: " puts ~99% of smollm2-135m's next-token mass on digits.
    prefill: str = "Score: "
    #: Judge prompts per forward pass; on 2 CPU cores 4 rated 2.4 prompts/s against 1.8 at 16 (the
    #: prefix pass repeats the KV cache once per number prefix, so a big batch costs memory traffic).
    max_batch: int = 4


class HFJudge:
    """A local causal LM as judge; loaded on first use (and shared by the threads that call it).

    ``shares_compute``: it runs on the subject's own CPU cores or GPU, so callers judge after generating
    instead of overlapping the two (on 2 cores the overlap made a sweep 3x slower than the sum)."""

    shares_compute = True

    def __init__(self, config: HFJudgeConfig, model: Any = None, tok: Any = None) -> None:
        self.config = config
        self.judge_id = f"hf:{config.model}"
        self._model, self._tok = model, tok
        self._lock = threading.Lock()
        self._candidates: list[list[int]] | None = None
        self._continues: torch.Tensor | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from steerlab.models import load_model

            LOG.info("loading judge model %s", self.config.model)
            self._model, self._tok = load_model(
                self.config.model, device=self.config.device, dtype=self.config.dtype
            )
        return self._model, self._tok

    def _number_tokens(self, tok: Any, vocab_size: int) -> tuple[list[list[int]], torch.Tensor]:
        if self._candidates is None or self._continues is None:
            self._candidates = [
                tok(str(n), add_special_tokens=False)["input_ids"] for n in range(MAX_SCORE + 1)
            ]
            continues = torch.zeros(vocab_size, dtype=torch.bool)
            for token_id in range(min(vocab_size, len(tok))):
                text = tok.decode([token_id])
                continues[token_id] = bool(text) and text[0].isdigit()
            self._continues = continues
        return self._candidates, self._continues

    def score_prompts(self, prompts: Sequence[str]) -> list[JudgeScore]:
        from steerlab.chat import format_chat
        from steerlab.scoring import encode, length_buckets

        with self._lock, torch.inference_mode():
            model, tok = self._load()
            encoded = encode(tok, [format_chat(tok, p, prefill=self.config.prefill) for p in prompts])
            out: list[JudgeScore | None] = [None] * len(prompts)
            for batch in length_buckets([len(e) for e in encoded], self.config.max_batch, 1 << 14):
                for index, score in zip(
                    batch, self._score_batch(model, tok, [encoded[i] for i in batch]), strict=True
                ):
                    out[index] = score
            return [s for s in out if s is not None]

    def _score_batch(self, model: Any, tok: Any, encoded: list[list[int]]) -> list[JudgeScore]:
        from steerlab.models import model_device
        from steerlab.scoring import pad_left

        device = model_device(model)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids, mask = pad_left(encoded, pad, device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [B, V]
        candidates, continues = self._number_tokens(tok, first.shape[-1])
        # Next-token distributions after every proper prefix of a candidate ("1" for "15", "10" for "100").
        prefixes = sorted({tuple(c[:k]) for c in candidates for k in range(1, len(c))})
        rows = len(encoded)
        after: dict[tuple[int, ...], torch.Tensor] = {(): first}
        if prefixes:
            n, width = len(prefixes), max(len(p) for p in prefixes)
            grid = torch.tensor([list(p) + [p[-1]] * (width - len(p)) for p in prefixes], device=device)
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)  # row b*n + j: prompt b, prefix j
            extra = torch.ones((rows * n, width), dtype=mask.dtype, device=device)
            mask2 = torch.cat([mask.repeat_interleave(n, dim=0), extra], dim=1)
            start = mask.sum(-1).repeat_interleave(n).unsqueeze(1)
            positions = start + torch.arange(width, device=device).unsqueeze(0)
            kv = {_cache_argument(model): cache}
            logits = model(
                input_ids=grid.repeat(rows, 1), attention_mask=mask2, position_ids=positions, **kv
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1).view(rows, n, width, -1)
            for j, prefix in enumerate(prefixes):
                after[prefix] = logp[:, j, len(prefix) - 1]  # [B, V]
        block = continues.to(device)
        stop = {
            k: torch.logsumexp(v.masked_fill(block, float("-inf")), dim=-1) for k, v in after.items() if k
        }
        values = []
        for tokens in candidates:
            total = after[()][:, tokens[0]]
            for k in range(1, len(tokens)):
                total = total + after[tuple(tokens[:k])][:, tokens[k]]
            if tuple(tokens) in stop:  # e.g. "1" may go on to "15": only the stop mass makes it "1"
                total = total + stop[tuple(tokens)]
            values.append(total)
        probs = torch.exp(torch.stack(values, dim=1).double())  # [B, 101]
        scale = torch.arange(len(candidates), dtype=torch.float64, device=probs.device)
        results = []
        for row in range(rows):
            mass = float(probs[row].sum())
            if mass < self.config.min_mass or mass <= 0:
                results.append(JudgeScore(None, mass, "unscorable", ""))
            else:
                results.append(JudgeScore(float((probs[row] * scale).sum() / mass), mass, "logprobs", ""))
        return results


def _cache_argument(model: Any) -> str:
    """``cache`` on transformers versions that renamed ``past_key_values``."""
    from steerlab.scoring import cache_argument

    return cache_argument(model) or "past_key_values"


def make_hf_judge(model: str, base_url: str | None = None, **options: Any) -> HFJudge:
    if base_url is not None:
        raise ValueError("--judge-base-url is for openai judges; an hf judge runs in-process")
    return HFJudge(HFJudgeConfig(model=model or "smollm2-135m", **options))
