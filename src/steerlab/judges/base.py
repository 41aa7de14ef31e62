"""What every judge shares: the score type, the `Judge` protocol, and turning a judge's reply into a score.

A judge rates a response 0-100. When the judge exposes log-probs the score is the probability-weighted
mean over the integers 0-100 and the probability mass on them is recorded; a reply whose mass is below a
threshold is *unscorable* (score None), never a silent zero. Without log-probs the integer is parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "DEFAULT_MIN_MASS",
    "Judge",
    "JudgeError",
    "JudgeScore",
    "parse_integer",
    "score_from_digit_positions",
    "score_from_logprobs",
    "shares_compute",
]

#: Below this probability mass on the integers 0-100 a log-prob score is unscorable (persona-vectors uses 0.25).
DEFAULT_MIN_MASS = 0.25
MAX_SCORE = 100
DIGITS = "0123456789"  # str.isdigit() is also true for '²' and other non-ASCII digits


class JudgeError(RuntimeError):
    """A judge could not be reached or refused the request (auth, unknown model, outage); one clear line."""


@dataclass(frozen=True)
class JudgeScore:
    """One judged response: ``score`` in [0, 100] or None (unscorable); ``mass`` is the probability on the
    integers 0-100 (None when the judge gave no log-probs); ``method`` is logprobs, parsed or unscorable."""

    score: float | None
    mass: float | None
    method: str
    raw: str = ""

    @property
    def scorable(self) -> bool:
        return self.score is not None

    def as_dict(self) -> dict[str, object]:
        return {"score": self.score, "mass": self.mass, "method": self.method, "raw": self.raw}


@runtime_checkable
class Judge(Protocol):
    """A judge plug-in: rates prompts (already holding the rubric, question and answer) 0-100.

    ``judge_id`` names the judge and its model (part of every cache key and result row).
    ``score_prompts`` returns one `JudgeScore` per prompt, in order.
    An optional ``shares_compute = True`` says the judge runs on this process's own compute (an in-process
    model): callers then judge between generation batches rather than overlapping judging with
    generation, which only pays when the judge waits on a remote server.
    """

    judge_id: str

    def score_prompts(self, prompts: Sequence[str]) -> list[JudgeScore]: ...


_INT = re.compile(r"\b(\d{1,3})\b")


def shares_compute(judge: object) -> bool:
    """Whether ``judge`` computes on this process's own cores or GPU (see `Judge`); False when undeclared."""
    return bool(getattr(judge, "shares_compute", False))


def parse_integer(text: str) -> JudgeScore:
    """The first integer 0-100 in a reply (no log-probs); unscorable when there is none."""
    for match in _INT.finditer(text or ""):
        value = int(match.group(1))
        if 0 <= value <= MAX_SCORE:
            return JudgeScore(float(value), None, "parsed", text)
    return JudgeScore(None, None, "unscorable", text)


def _as_int(token: str) -> int | None:
    stripped = token.strip().lstrip("Ġ▁")
    if stripped.isascii() and stripped.isdigit() and len(stripped) <= 3:
        value = int(stripped)
        if value <= MAX_SCORE and (stripped == "0" or not stripped.startswith("0")):
            return value
    return None


def score_from_logprobs(
    top: Mapping[str, float], min_mass: float = DEFAULT_MIN_MASS, raw: str = ""
) -> JudgeScore:
    """Probability-weighted mean over integer tokens 0-100 among one position's top log-probs."""
    probs: dict[int, float] = {}
    for token, logprob in top.items():
        value = _as_int(token)
        if value is not None and logprob is not None and math.isfinite(logprob):
            probs[value] = probs.get(value, 0.0) + math.exp(logprob)
    mass = sum(probs.values())
    if mass < min_mass or mass <= 0:
        return JudgeScore(None, mass, "unscorable", raw)
    return JudgeScore(sum(v * p for v, p in probs.items()) / mass, mass, "logprobs", raw)


def score_from_digit_positions(
    positions: Sequence[Mapping[str, float]], min_mass: float = DEFAULT_MIN_MASS, raw: str = ""
) -> JudgeScore:
    """Score from the top log-probs of a reply's first tokens, for tokenizers that write numbers digit by digit.

    When the first position holds multi-digit integer tokens (e.g. OpenAI models) this is
    `score_from_logprobs` of that position. Otherwise the reply's first three positions are read as
    hundreds/tens/units: P(n) multiplies the first digit's probability by the next positions' digit
    (or end) probabilities, the later positions taken from the reply's own path (conditional
    independence of the later digits from the first one: an approximation, exact for greedy paths).
    The mass is the first position's probability on digits.
    """
    if not positions:
        return JudgeScore(None, None, "unscorable", raw)
    first = positions[0]
    if any((v := _as_int(t)) is not None and v >= 10 for t in first):
        return score_from_logprobs(first, min_mass, raw)
    digit_probs = [_digits(p) for p in positions[:3]]
    p1 = digit_probs[0]
    mass = sum(p1.values())
    if mass < min_mass or mass <= 0:
        return JudgeScore(None, mass, "unscorable", raw)
    # P(the reply ends after k digits) from the later positions: 1 - their digit mass.
    p2 = digit_probs[1] if len(digit_probs) > 1 else {}
    p3 = digit_probs[2] if len(digit_probs) > 2 else {}
    end2 = max(0.0, 1.0 - sum(p2.values()))
    end3 = max(0.0, 1.0 - sum(p3.values()))
    weights: dict[int, float] = {}
    for d1, q1 in p1.items():
        if d1 == 0:
            weights[0] = weights.get(0, 0.0) + q1
            continue
        weights[d1] = weights.get(d1, 0.0) + q1 * end2
        for d2, q2 in p2.items():
            value = 10 * d1 + d2
            if value == 10:
                weights[10] = weights.get(10, 0.0) + q1 * q2 * end3
                weights[100] = weights.get(100, 0.0) + q1 * q2 * p3.get(0, 0.0)
            else:
                weights[value] = weights.get(value, 0.0) + q1 * q2
    total = sum(weights.values())
    if total <= 0:
        return JudgeScore(None, mass, "unscorable", raw)
    return JudgeScore(sum(v * w for v, w in weights.items()) / total, mass, "logprobs", raw)


def _digits(top: Mapping[str, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for token, logprob in top.items():
        stripped = token.strip().lstrip("Ġ▁")
        if len(stripped) == 1 and stripped in DIGITS and logprob is not None and math.isfinite(logprob):
            out[int(stripped)] = out.get(int(stripped), 0.0) + math.exp(logprob)
    return out
