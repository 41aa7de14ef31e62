"""steerlab.interventions.base.check_finite: the fast finite-sum path accepts large finite values whose sum
overflows and still names a tensor with one NaN or inf."""

from __future__ import annotations

import pytest
import torch

from steerlab.interventions.base import InterventionError, check_finite


def test_finite_values_whose_sum_overflows_pass():
    huge = torch.full((4, 4), 3e38)  # finite float32, but the sum is inf
    assert not bool(torch.isfinite(huge.sum()))
    check_finite({"w": huge, "ints": torch.arange(3)}, "here")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_one_bad_value_is_named(bad):
    tensor = torch.randn(8, 8)
    tensor[3, 5] = bad
    with pytest.raises(InterventionError, match="here: tensor 'w' has 1 non-finite"):
        check_finite({"ok": torch.ones(2), "w": tensor}, "here")
