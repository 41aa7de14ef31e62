"""Both arms (+c and -c) of one iso-KL evaluation as ONE batch, for interventions that steer rows apart.

A KL evaluation with ``arms="both"`` is, at +c and then at -c, a greedy rollout under steering, which also
gives the steered log-probs of its own tokens (:func:`steerlab.generation.greedy_rollout`), and a base
pass over the rollout on the prompts' stored KV cache (:class:`steerlab.base_kv.PromptKV`). On CPU a
decoding step at 2 x n_prompts rows costs less than two steps at n_prompts (small matrix products run
far below peak), so an intervention that declares ``per_row_coefficients`` (activation hooks, see
:mod:`steerlab.row_coefficients`) runs its two arms together, rows ``0..n-1`` at +c and ``n..2n-1`` at
-c, and the KLs equal the sequential arms' to float round-off (``tests/test_calibrate_arms.py``). Weight
deltas and prompt interventions keep two sequential arms (:func:`arm_kls`); both paths are one
:func:`rollout_kls`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from steerlab.base_kv import PromptKV
from steerlab.prefix_reuse import steered, steered_rows

__all__ = ["arm_kls", "paired_arm_kls", "pooled", "rollout_kls"]


def pooled(kls: Sequence[np.ndarray]) -> np.ndarray:
    """Per-token KLs of several prompts as one array (a single zero when there are none)."""
    sized = [k for k in kls if k.size]
    return np.concatenate(sized) if sized else np.zeros(1)


def rollout_kls(
    model: Any,
    tok: Any,
    intervention: Any,
    users: Sequence[str],
    signed: Sequence[float],
    steer: Callable[[], AbstractContextManager[Any]],
    *,
    n_tokens: int,
    max_batch: int,
    base_kv: PromptKV | None = None,
) -> list[np.ndarray]:
    """Per-row token KLs of a greedy rollout: row ``i`` is ``users[i]`` (rewritten for ``signed[i]``, which a
    prompt intervention needs), rolled out inside ``steer()`` and compared with the plain prompt's base
    log-probs over the same tokens. `base_kv` keeps the plain prompts' KV cache across evaluations."""
    from steerlab.chat import format_chat
    from steerlab.generation import greedy_rollout
    from steerlab.scoring import encode

    base = encode(tok, [format_chat(tok, user) for user in users])
    steered = []
    for row_coeff, user in zip(signed, users, strict=True):
        system, rewritten = intervention.rewrite(row_coeff, None, user)
        steered.append(format_chat(tok, rewritten, system))
    with steer():
        rollouts, steered_logprobs = greedy_rollout(
            model, tok, steered, max_new_tokens=n_tokens, max_batch=max_batch
        )
    base_logprobs = (base_kv or PromptKV(model, tok, max_batch)).logprobs(base, rollouts)
    return [
        (s.exp() * (s - b)).sum(-1).clamp(min=0).cpu().double().numpy()
        for s, b in zip(steered_logprobs, base_logprobs, strict=True)
    ]


def arm_kls(
    model: Any,
    tok: Any,
    intervention: Any,
    coeff: float,
    users: Sequence[str],
    config: Any,
    base_kv: PromptKV | None = None,
) -> np.ndarray:
    """Per-token KLs (all prompts and positions pooled) of one signed coefficient."""
    kls = rollout_kls(
        model,
        tok,
        intervention,
        users,
        [coeff] * len(users),
        lambda: steered(model, intervention, coeff),
        n_tokens=config.n_tokens,
        max_batch=config.max_batch,
        base_kv=base_kv,
    )
    return pooled(kls)


def paired_arm_kls(
    model: Any,
    tok: Any,
    intervention: Any,
    coeff: float,
    users: Sequence[str],
    config: Any,
    base_kv: PromptKV | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token KLs pooled over prompts and positions at +|coeff| and at -|coeff|, measured in one batch.

    `config` is a :class:`steerlab.calibrate.CalibrationConfig`; its ``max_batch`` bounds the rows of each
    arm, so a batch here holds up to twice that (both arms of the same prompts).
    """
    c = abs(float(coeff))
    signed = [c] * len(users) + [-c] * len(users)
    kls = rollout_kls(
        model,
        tok,
        intervention,
        list(users) * 2,
        signed,
        lambda: steered_rows(model, intervention, signed),
        n_tokens=config.n_tokens,
        max_batch=2 * config.max_batch,
        base_kv=base_kv,
    )
    return pooled(kls[: len(users)]), pooled(kls[len(users) :])
