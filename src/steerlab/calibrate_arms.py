"""Both arms (+c and -c) of one iso-KL evaluation as ONE batch, for interventions that steer rows apart.

A KL evaluation with ``arms="both"`` is a greedy rollout plus a steered and a base teacher-forced pass at
+c, then the same at -c. Decoding is memory-bound on CPU (every step reads all the weights), so a step at
2 x n_prompts rows costs about what one at n_prompts does: an intervention that declares
``per_row_coefficients`` (activation hooks, see :mod:`steerlab.row_coefficients`) runs its two arms
together, rows ``0..n-1`` at +c and ``n..2n-1`` at -c, and the KLs equal the sequential arms' to float
round-off (``tests/test_calibrate_arms.py``). Weight deltas and prompt interventions keep two sequential
arms (:func:`arm_kls`); both paths are one :func:`rollout_kls`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

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
) -> list[np.ndarray]:
    """Per-row token KLs of a greedy rollout: row ``i`` is ``users[i]`` (rewritten for ``signed[i]``, which a
    prompt intervention needs), rolled out and teacher-forced inside ``steer()`` against the plain prompt."""
    from steerlab.chat import format_chat
    from steerlab.scoring import generate_ids, token_kl

    base = [format_chat(tok, user) for user in users]
    steered = []
    for row_coeff, user in zip(signed, users, strict=True):
        system, rewritten = intervention.rewrite(row_coeff, None, user)
        steered.append(format_chat(tok, rewritten, system))
    with steer():
        rollouts = generate_ids(
            model, tok, steered, max_new_tokens=n_tokens, max_batch=max_batch, stop_at_eos=False
        )
    return token_kl(model, tok, steered, rollouts, steer, max_batch=max_batch, base_prompts=base)


def arm_kls(
    model: Any, tok: Any, intervention: Any, coeff: float, users: Sequence[str], config: Any
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
    )
    return pooled(kls)


def paired_arm_kls(
    model: Any, tok: Any, intervention: Any, coeff: float, users: Sequence[str], config: Any
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
    )
    return pooled(kls[: len(users)]), pooled(kls[len(users) :])
