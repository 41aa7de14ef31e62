"""Both arms (+c and -c) of one iso-KL evaluation as ONE batch, for interventions that steer rows apart.

A KL evaluation with ``arms="both"`` is a greedy rollout plus a steered and a base teacher-forced pass at
+c, then the same at -c. Decoding is memory-bound on CPU (every step reads all the weights), so a step at
2 x n_prompts rows costs about what one at n_prompts does: an intervention that declares
``per_row_coefficients`` (activation hooks, see :mod:`steerlab.row_coefficients`) runs its two arms
together, rows ``0..n-1`` at +c and ``n..2n-1`` at -c, and the KLs equal the sequential arms' to float
round-off (``tests/test_calibrate_arms.py``). Weight deltas and prompt interventions keep two sequential
arms (``steerlab.calibrate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from steerlab.row_coefficients import steers_rows

__all__ = ["paired_arm_kls", "steers_rows"]


def _pooled(kls: Sequence[np.ndarray]) -> np.ndarray:
    """Per-token KLs of several prompts as one array (a single zero when there are none)."""
    sized = [k for k in kls if k.size]
    return np.concatenate(sized) if sized else np.zeros(1)


def paired_arm_kls(
    model: Any, tok: Any, intervention: Any, coeff: float, users: Sequence[str], config: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token KLs pooled over prompts and positions at +|coeff| and at -|coeff|, measured in one batch.

    `config` is a :class:`steerlab.calibrate.CalibrationConfig`; its ``max_batch`` bounds the rows of each
    arm, so a batch here holds up to twice that (both arms of the same prompts).
    """
    from steerlab.chat import format_chat
    from steerlab.scoring import generate_ids, token_kl

    c = abs(float(coeff))
    signed = [c] * len(users) + [-c] * len(users)
    rows = list(users) * 2
    base = [format_chat(tok, user) for user in rows]
    steered = []
    for row_coeff, user in zip(signed, rows, strict=True):
        system, rewritten = intervention.rewrite(row_coeff, None, user)
        steered.append(format_chat(tok, rewritten, system))
    max_batch = 2 * config.max_batch
    with intervention.apply_rows(model, signed):
        rollouts = generate_ids(
            model, tok, steered, max_new_tokens=config.n_tokens, max_batch=max_batch, stop_at_eos=False
        )
    kls = token_kl(
        model,
        tok,
        steered,
        rollouts,
        lambda: intervention.apply_rows(model, signed),
        max_batch=max_batch,
        base_prompts=base,
    )
    return _pooled(kls[: len(users)]), _pooled(kls[len(users) :])
