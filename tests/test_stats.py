"""steerlab.stats: hand-computed cases for the hierarchical bootstrap, Holm, anti-steerable fraction,
Pareto front membership and interpolation at a KL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steerlab.stats import (
    anti_steerable_fraction,
    hierarchical_bootstrap,
    holm,
    holm_with_ranking,
    interpolate_at_kl,
    paired_seed_matrix,
    pareto_front,
    ranking_verdict,
    row_effect_distribution,
    row_effects,
    seed_summary,
)
from steerlab.stats.significance import bootstrap_distribution


def test_bootstrap_resamples_seeds_then_rows():
    # Rows are constant inside a seed, so only the seed draw matters: two draws of {1, 3} give the
    # means 1, 2, 3 with probabilities 1/4, 1/2, 1/4.
    boots = bootstrap_distribution([[1.0, 1.0], [3.0, 3.0]], n_boot=20000, seed=1)
    assert set(np.round(boots, 9)) == {1.0, 2.0, 3.0}
    assert np.mean(boots == 2.0) == pytest.approx(0.5, abs=0.02)
    assert np.mean(boots == 1.0) == pytest.approx(0.25, abs=0.02)
    test = hierarchical_bootstrap([[1.0, 1.0], [3.0, 3.0]], n_boot=999)
    assert test.diff == 2.0 and (test.ci_low, test.ci_high) == (1.0, 3.0)
    assert test.p_value == pytest.approx(2 / 1000)  # every resample > 0: the smallest p the +1 rule allows


def test_bootstrap_within_one_seed_resamples_rows():
    # One seed, rows {-1, +1}: the mean of two draws is -1, 0, +1 with 1/4, 1/2, 1/4; P(<=0) = P(>=0) = 3/4.
    boots = bootstrap_distribution([-1.0, 1.0], n_boot=20000, seed=2)
    assert np.mean(boots == 0.0) == pytest.approx(0.5, abs=0.02)
    assert hierarchical_bootstrap([-1.0, 1.0], n_boot=500).p_value == 1.0


def test_seed_variation_widens_the_interval():
    rows = np.linspace(0.5, 1.5, 40)
    same = hierarchical_bootstrap(np.vstack([rows, rows, rows]), n_boot=2000)
    spread = hierarchical_bootstrap(np.vstack([rows - 1.0, rows, rows + 1.0]), n_boot=2000)
    assert same.diff == pytest.approx(spread.diff)
    assert spread.ci_high - spread.ci_low > 3 * (same.ci_high - same.ci_low)


def test_paired_seed_matrix_pairs_seeds_and_broadcasts_a_single_baseline():
    matrix = paired_seed_matrix({0: [1, 2], 1: [3, 4]}, {0: [1, 1]})
    assert matrix.tolist() == [[0, 1], [2, 3]]
    assert paired_seed_matrix({0: [1, 2], 1: [3, 4]}, {0: [0, 0], 1: [1, 1]}).tolist() == [[1, 2], [2, 3]]
    with pytest.raises(ValueError, match="seed 1"):
        paired_seed_matrix({1: [1]}, {0: [0], 2: [0]})
    with pytest.raises(ValueError, match="identical rows"):
        paired_seed_matrix({0: [1, 2]}, {0: [1]})


def test_holm_by_hand():
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, raised to 0.06 to stay monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_seed_summary_and_anti_steerable():
    summary = seed_summary([1.0, 3.0, -1.0])
    assert summary["mean"] == 1.0 and summary["n_seeds"] == 3
    assert summary["std"] == pytest.approx(2.0) and summary["sign_agreement"] == pytest.approx(2 / 3)
    y0, yp = [0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 2.0, 4.0]  # effects +1, -0.5, 0, +1
    assert row_effects(y0, yp).tolist() == [1.0, -0.5, 0.0, 1.0]
    assert anti_steerable_fraction(y0, yp) == 0.25
    assert anti_steerable_fraction(y0, yp, direction=-1) == 0.5
    dist = row_effect_distribution(row_effects(y0, yp))
    assert dist["median"] == 0.5 and dist["anti"] == 0.25 and dist["mean"] == pytest.approx(0.375)


def test_pareto_front_by_hand():
    # (effect, kl, tax): B dominates A; C trades effect for cost; D is dominated by C; E ties B exactly.
    effect = [1.0, 2.0, 0.5, 0.4, 2.0, math.nan]
    kl = [1.0, 1.0, 0.2, 0.3, 1.0, 0.0]
    tax = [0.1, 0.1, 0.1, 0.1, 0.1, 0.0]
    assert pareto_front(effect, kl, tax) == [False, True, True, False, True, False]
    assert pareto_front([1.0, 2.0]) == [False, True]


def test_interpolate_at_kl_by_hand():
    kls, effects = [0.5, 1.0, 2.0], [1.0, 3.0, 4.0]
    assert interpolate_at_kl(kls, effects, 0.75) == pytest.approx(2.0)
    assert interpolate_at_kl(kls, effects, 1.0) == 3.0
    assert interpolate_at_kl(kls, effects, 0.25) == pytest.approx(0.5)  # through the origin
    assert math.isnan(interpolate_at_kl(kls, effects, 0.25, through_origin=False))
    assert math.isnan(interpolate_at_kl(kls, effects, 3.0))  # never reached: no extrapolation
    assert interpolate_at_kl([1.0, 1.0], [2.0, 4.0], 0.5) == pytest.approx(1.5)  # repeated KLs averaged


def test_ranking_verdicts():
    assert "single-seed winner" in ranking_verdict({"a": [1.0], "b": [0.5]})
    assert "beats" in ranking_verdict({"a": [1.0, 1.1], "b": [0.5, 0.4]}, adjusted_p=0.01)
    assert "unstable" in ranking_verdict({"a": [1.0, 1.1], "b": [0.9, 1.2]}, adjusted_p=0.4)


def test_ranking_comparison_is_one_more_member_of_the_holm_family():
    # tests 0.001, 0.002, 0.003 and the ranking test 0.02, four in one family: sorted 0.001 x4 = 0.004,
    # 0.002 x3 = 0.006, 0.003 x2 = 0.006, 0.02 x1 = 0.02. (The old p_top * len(tests) gave 0.06.)
    adjusted, top = holm_with_ranking([0.001, 0.002, 0.003], 0.02)
    assert adjusted == pytest.approx([0.004, 0.006, 0.006]) and top == pytest.approx(0.02)
    # a ranking test ranked first among equals: 0.001 x4 = 0.004, 0.0015 x3 = 0.0045, then monotone 0.0045
    adjusted, top = holm_with_ranking([0.001, 0.002, 0.003], 0.0015)
    assert adjusted == pytest.approx([0.004, 0.0045, 0.0045]) and top == pytest.approx(0.0045)
    # the comparison is already test 1 (winner vs a baseline that is the runner-up): not counted twice
    adjusted, top = holm_with_ranking([0.01, 0.04, 0.03], 0.04, same_as=1)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06]) and top == pytest.approx(0.06)
    assert holm_with_ranking([0.01], None) == ([pytest.approx(0.01)], None)
