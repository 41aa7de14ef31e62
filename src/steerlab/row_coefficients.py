"""Per-row steering coefficients: one batch whose rows are steered at different coefficients.

Both arms of an iso-KL evaluation (+c and -c) can run as ONE batch of generation instead of two (on CPU a
decoding step at batch 16 costs less than two at batch 8: small matrix products run far below peak).
Two context variables meet here, like :mod:`steerlab.positions`:

- the code that forms a batch (generation, token KL, choice scoring) declares which of ITS input rows the
  batch holds, in batch order (:func:`batch_rows`); it knows nothing about coefficients, and bucketing,
  sorting or halving a batch cannot lose track of a row because each batch says what it holds;
- an intervention applied with ``apply_rows(model, coeffs)`` declares one coefficient per input row
  (:func:`row_coefficients`); its hooks read the coefficients of the batch in flight
  (:func:`batch_coefficients`) and edit each row at its own (:func:`edit_rows`).

A shared chat head run once for a whole batch (:mod:`steerlab.prefix_kv`) is run once per distinct
coefficient instead (:func:`head_groups`). Outside ``apply_rows`` nothing here has any effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from steerlab.scoped import scoped

__all__ = [
    "HeadGroups",
    "RowCoefficientError",
    "batch_coefficients",
    "batch_rows",
    "coefficient_groups",
    "edit_rows",
    "head_groups",
    "required_coefficients",
    "row_coefficients",
    "steers_rows",
]

_ROWS: ContextVar[tuple[int, ...] | None] = ContextVar("steerlab_batch_rows", default=None)
_COEFFS: ContextVar[tuple[float, ...] | None] = ContextVar("steerlab_row_coefficients", default=None)


class RowCoefficientError(RuntimeError):
    """Per-row coefficients are in force but a forward pass did not say which rows it holds."""


def steers_rows(intervention: object) -> bool:
    """True when `intervention` declares that ``apply_rows`` can steer each row at its own coefficient."""
    return bool(getattr(intervention, "per_row_coefficients", False))


def batch_rows(rows: Sequence[int]) -> contextlib.AbstractContextManager[tuple[int, ...] | None]:
    """Declare that the forward passes inside the block run the input rows `rows` (in batch order)."""
    return scoped(_ROWS, tuple(int(row) for row in rows))


def row_coefficients(coeffs: Sequence[float]) -> contextlib.AbstractContextManager[tuple[float, ...] | None]:
    """Declare one steering coefficient per input row (set by an intervention's ``apply_rows``)."""
    return scoped(_COEFFS, tuple(float(c) for c in coeffs))


def batch_coefficients(batch: int) -> tuple[float, ...] | None:
    """The coefficient of each row of the batch in flight (`batch` rows), or None outside ``apply_rows``."""
    coeffs = _COEFFS.get()
    if coeffs is None:
        return None
    rows = _ROWS.get()
    if rows is None:
        raise RowCoefficientError(
            "per-row coefficients are in force but this forward pass did not declare its rows "
            "(wrap it in steerlab.row_coefficients.batch_rows)"
        )
    if len(rows) != batch:
        raise RowCoefficientError(f"the batch has {batch} rows but {len(rows)} were declared: {list(rows)}")
    if rows and max(rows) >= len(coeffs):
        raise RowCoefficientError(
            f"row {max(rows)} of the batch has no coefficient: apply_rows was given {len(coeffs)}"
        )
    return tuple(coeffs[row] for row in rows)


def required_coefficients(batch: int) -> tuple[float, ...]:
    """:func:`batch_coefficients` for a hook installed by ``apply_rows``, which must find them in force."""
    coeffs = batch_coefficients(batch)
    if coeffs is None:
        raise RowCoefficientError(
            "a per-row steering hook ran outside its apply_rows block (another thread or context?)"
        )
    return coeffs


def coefficient_groups(coeffs: Sequence[float]) -> list[tuple[float, list[int]]]:
    """(coefficient, positions in the batch) for each distinct coefficient, in order of first appearance."""
    groups: dict[float, list[int]] = {}
    for position, coeff in enumerate(coeffs):
        groups.setdefault(coeff, []).append(position)
    return list(groups.items())


def edit_rows(
    hidden: torch.Tensor,
    coeffs: Sequence[float],
    edit: Callable[[torch.Tensor, float], torch.Tensor],
) -> torch.Tensor:
    """`hidden` [batch, ...] with ``edit(rows, c)`` applied to the rows at each distinct coefficient ``c``.

    The edit runs once per distinct coefficient, on those rows only (an edit may be nonlinear in ``c``);
    rows at ``c = 0`` are returned exactly as they came.
    """
    groups = coefficient_groups(coeffs)
    if len(groups) == 1:
        coeff = groups[0][0]
        return hidden if coeff == 0 else edit(hidden, coeff)
    edited = hidden.clone()
    for coeff, positions in groups:
        if coeff == 0:
            continue
        index = torch.tensor(positions, dtype=torch.long, device=hidden.device)
        edited[index] = edit(hidden[index], coeff)
    return edited


@dataclass(frozen=True)
class HeadGroups:
    """How to run a head shared by a batch whose rows carry different coefficients.

    `rows`: one input row per distinct coefficient (run the head once for each, as one batch);
    `key`: those coefficients (what the head's keys and values depend on);
    `assignment`: for each row of the batch, the position in `rows` whose head it takes.
    """

    rows: tuple[int, ...]
    key: tuple[float, ...]
    assignment: tuple[int, ...]


def head_groups(batch: int) -> HeadGroups | None:
    """The groups of the batch in flight (`batch` rows) by coefficient, or None outside ``apply_rows``."""
    coeffs = batch_coefficients(batch)
    if coeffs is None:
        return None
    groups = coefficient_groups(coeffs)
    rows = _ROWS.get() or ()
    assignment = [0] * batch
    for group, (_coeff, positions) in enumerate(groups):
        for position in positions:
            assignment[position] = group
    return HeadGroups(
        rows=tuple(rows[positions[0]] for _coeff, positions in groups),
        key=tuple(coeff for coeff, _positions in groups),
        assignment=tuple(assignment),
    )
