"""steerlab.row_coefficients: rows of one batch steered at their own coefficients give what each coefficient
gives alone (choice scores with a shared head, generation, every hook kind); c = 0 rows stay exactly unedited."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerlab.chat import format_chat
from steerlab.interventions import ActivationAddition
from steerlab.interventions.activation_variants import (
    ClusterAddition,
    CosineGatedAddition,
    DirectionalAblation,
    ModuleAddition,
)
from steerlab.interventions.vector_bank import VectorBank
from steerlab.row_coefficients import (
    RowCoefficientError,
    batch_rows,
    edit_rows,
    head_groups,
    row_coefficients,
    steers_rows,
)
from steerlab.scoring import generate_ids, score_choices, score_continuations

SYSTEM = "You are a careful assistant. Answer every question with one word, Yes or No."
QUESTIONS = ("Is it raining?", "Should I stay?", "Is the sky green today?", "Can birds fly?", "Is 7 prime?")


def _vector(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*(shape or (64,)), generator=torch.Generator().manual_seed(seed))


def test_edit_rows_edits_each_coefficient_once_and_leaves_zero_rows_alone():
    hidden = _vector(0, 4, 3, 8)
    calls: list[float] = []

    def square(rows: torch.Tensor, c: float) -> torch.Tensor:  # nonlinear in c
        calls.append(c)
        return rows + c * c * rows.tanh()

    coeffs = [2.0, 0.0, -1.0, 2.0]
    edited = edit_rows(hidden, coeffs, square)
    assert sorted(calls) == [-1.0, 2.0]
    assert torch.equal(edited[1], hidden[1])
    for row, c in enumerate(coeffs):
        torch.testing.assert_close(edited[row], hidden[row] + c * c * hidden[row].tanh(), rtol=0, atol=0)
    assert edit_rows(hidden, [0.0] * 4, square) is hidden


def test_head_groups_pick_one_row_per_coefficient():
    with row_coefficients([1.0, 1.0, -1.0, -1.0, 0.0]), batch_rows([4, 2, 0, 3]):
        groups = head_groups(4)
    assert groups is not None
    assert groups.key == (0.0, -1.0, 1.0) and groups.rows == (4, 2, 0) and groups.assignment == (0, 1, 2, 1)
    assert head_groups(4) is None  # outside apply_rows


def test_undeclared_rows_are_refused(model, tok):
    addition = ActivationAddition({1: _vector(1)})
    ids = torch.tensor([[5, 6, 7], [5, 6, 8]])
    with addition.apply_rows(model, [1.0, -1.0]), pytest.raises(RowCoefficientError, match="declare"):
        model(input_ids=ids)
    with addition.apply_rows(model, [1.0, -1.0]), batch_rows([0]), pytest.raises(RowCoefficientError):
        model(input_ids=ids)  # 2 rows, 1 declared


HOOKS = {
    "addition": lambda: ActivationAddition({1: _vector(1), 3: _vector(2)}),
    "addition-generated": lambda: ActivationAddition({1: _vector(1)}, positions="generated"),
    "cluster": lambda: ClusterAddition({2: _vector(3, 3, 64)}),
    "cosine-gated": lambda: CosineGatedAddition({2: 4 * _vector(4)}, tau=0.05),
    "ablation": lambda: DirectionalAblation({1: _vector(5)}),
    "module": lambda: ModuleAddition({"model.layers.1.mlp.down_proj": _vector(6)}),
    "bank": lambda: VectorBank({2: _vector(7, 2, 64)}, index=1),
}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_choice_scores_per_row_equal_each_coefficient_alone(model, tok, name):
    intervention = HOOKS[name]()
    assert steers_rows(intervention)
    prompts = [format_chat(tok, q, system=SYSTEM, prefill="Answer:") for q in QUESTIONS]
    coeffs = [3.0, -3.0, 0.0, 3.0, -1.5]
    with intervention.apply_rows(model, coeffs):  # one batch: one shared head per coefficient
        together = score_choices(model, tok, prompts, "yes_no").logprobs
    for c in sorted(set(coeffs)):
        with intervention.apply(model, c):
            alone = score_choices(model, tok, prompts, "yes_no").logprobs
        rows = [row for row, value in enumerate(coeffs) if value == c]
        np.testing.assert_allclose(together[rows], alone[rows], rtol=0, atol=2e-5)
    if name != "addition-generated":  # generated-only additions do not touch a choice prompt
        with intervention.apply(model, 3.0):
            steered = score_choices(model, tok, prompts, "yes_no").logprobs
        assert not np.allclose(steered[0], together[2])  # steering moves scores, so a mix-up would show


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_generation_per_row_equals_each_coefficient_alone(model, tok, positions):
    addition = ActivationAddition({1: 3 * _vector(8), 2: 3 * _vector(9)}, positions=positions)
    prompts = [format_chat(tok, q) for q in QUESTIONS[:3]]
    coeffs = [2.0] * 3 + [-2.0] * 3 + [0.0] * 3
    with addition.apply_rows(model, coeffs):
        together = generate_ids(model, tok, prompts * 3, max_new_tokens=6, max_batch=4, stop_at_eos=False)
    alone = []
    for c in (2.0, -2.0, 0.0):
        with addition.apply(model, c):
            alone += generate_ids(model, tok, prompts, max_new_tokens=6, stop_at_eos=False)
    assert together == alone
    assert together[:3] != together[6:]  # steering changed the rollouts


def test_continuation_scores_per_row_equal_each_coefficient_alone(model, tok):
    addition = ActivationAddition({2: 3 * _vector(10)}, positions="generated")
    prompts = [format_chat(tok, q, system=SYSTEM) for q in QUESTIONS[:3]] * 2
    answers = [" Yes", " No, never", " Maybe so"] * 2
    coeffs = [1.5] * 3 + [-1.5] * 3
    with addition.apply_rows(model, coeffs):
        together = score_continuations(model, tok, prompts, answers, max_batch=4).total
    for c, rows in ((1.5, slice(0, 3)), (-1.5, slice(3, 6))):
        with addition.apply(model, c):
            alone = score_continuations(model, tok, prompts[rows], answers[rows]).total
        np.testing.assert_allclose(together[rows], alone, rtol=0, atol=2e-5)
    assert not np.allclose(together[:3], together[3:])
