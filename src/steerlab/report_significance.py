"""Report section: which differences between methods survive seeds and rows, and per-row steerability.

Per-row effects are ``y(+c) - y(0)`` of each arm on the eval's rows (``OUT/rows/<eval>/<arm>.parquet``),
taken at the arm's calibrated +c. Each method is tested against the best prompt baseline and against the
reference activation method (``mean_diff``) on the same rows with the hierarchical paired bootstrap
(seeds, then rows), and the p-values of all tests are Holm-corrected together. The ranking verdict's test (the winner against the
runner-up) is one more member of that Holm family, not a separate Bonferroni-style product.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pandas as pd

from steerlab.report_tables import BenchResults, markdown_table, method_labels
from steerlab.stats import (
    BootstrapTest,
    hierarchical_bootstrap,
    holm_with_ranking,
    paired_seed_matrix,
    ranking_verdict,
    row_effect_distribution,
    seed_summary,
)

__all__ = ["REFERENCE_METHODS", "per_row_effects", "significance_lines"]

REFERENCE_METHODS = ("mean_diff",)  # compared against every method besides the best prompt
PROMPT_FAMILY = "prompt"


def per_row_effects(results: BenchResults, eval_name: str) -> dict[str, dict[int, np.ndarray]]:
    """method -> seed -> per-row effect at the arm's calibrated +c, rows sorted by row_id (null-band
    vectors are averaged per row within a seed)."""
    rows = results.rows(eval_name)
    if rows.empty or "y" not in rows.columns:
        return {}
    calibrated = results.results.drop_duplicates(["method", "seed", "variant"])
    out: dict[str, dict[int, list[np.ndarray]]] = {}
    for (method, seed, variant), arm_rows in rows.groupby(
        ["method", "seed", "variant"], dropna=False, sort=False
    ):
        match = calibrated[(calibrated["method"] == method) & (calibrated["seed"] == seed)]
        if not pd.isna(cast(Any, variant)):  # a groupby key (Hashable to pandas-stubs)
            match = match[match["variant"] == variant]
        positive = sorted(c for c in arm_rows["coeff"].unique() if c > 0)
        if not positive:
            continue
        c = float(match["calibrated_c"].iloc[0]) if len(match) else positive[-1]
        c = min(positive, key=lambda p: abs(p - c))
        wide = arm_rows.pivot_table(index="row_id", columns="coeff", values="y").sort_index()
        if 0.0 not in wide.columns:
            continue
        out.setdefault(str(method), {}).setdefault(int(cast(int, seed)), []).append(
            (wide[c] - wide[0.0]).to_numpy(dtype=float)
        )
    return {m: {s: np.mean(v, axis=0) for s, v in seeds.items()} for m, seeds in out.items()}


def _families(results: BenchResults) -> dict[str, str]:
    frame = results.results.drop_duplicates("method")
    return dict(zip(frame["method"], frame["family"], strict=True))


def significance_lines(
    results: BenchResults, eval_name: str, n_boot: int = 2000, alpha: float = 0.05
) -> list[str]:
    """Seeds, tests against the baselines (Holm-corrected), the ranking verdict and anti-steerable rows."""
    effects = per_row_effects(results, eval_name)
    if not effects:
        return []
    labels = method_labels(results)
    null = set(results.null_methods)
    per_seed = {m: [float(v.mean()) for _, v in sorted(s.items())] for m, s in effects.items()}
    families = _families(results)
    prompts = [m for m in effects if families.get(m) == PROMPT_FAMILY]
    best_prompt = max(prompts, key=lambda m: float(np.mean(per_seed[m]))) if prompts else None
    references = [m for m in ([best_prompt] if best_prompt else []) + list(REFERENCE_METHODS) if m in effects]
    tests: list[dict[str, Any]] = []
    for method in effects:
        for reference in references:
            if method == reference or method in null:
                continue
            try:
                matrix = paired_seed_matrix(effects[method], effects[reference])
            except ValueError:
                continue
            test = hierarchical_bootstrap(matrix, n_boot=n_boot)
            tests.append({"method": method, "vs": reference, "test": test})
    ranked = {m: v for m, v in per_seed.items() if m not in null}
    ranking, same_as = _ranking_test(effects, ranked, tests, n_boot)
    adjusted, p_top = holm_with_ranking(
        [t["test"].p_value for t in tests], ranking.p_value if ranking else None, same_as
    )
    if same_as is not None:  # the comparison is already a member of the family
        tests[same_as]["ranking"] = True
    elif ranking is not None:  # one more member of the Holm family, shown with the others
        top = _top_two(ranked)
        tests.append({"method": top[0], "vs": top[1], "test": ranking, "ranking": True})
        adjusted.append(float(p_top) if p_top is not None else math.nan)
    seed_rows = []
    for method, values in per_seed.items():
        summary = seed_summary(values)
        dist = row_effect_distribution(np.concatenate(list(effects[method].values())))
        seed_rows.append(
            {
                "method": labels.get(method, method),
                "mean": f"{summary['mean']:+.3f}",
                "std over seeds": "" if math.isnan(float(summary["std"])) else f"{summary['std']:.3f}",
                "n_seeds": summary["n_seeds"],
                "sign agreement": f"{summary['sign_agreement']:.2f}",
                "median row effect [q05, q95]": f"{dist['median']:+.3f} [{dist['q05']:+.3f}, {dist['q95']:+.3f}]",
                "anti-steerable": f"{100 * dist['anti']:.1f}%",
            }
        )
    lines = [
        f"## Significance and steerability: {eval_name}",
        "",
        "Effect = per-row y(+c) - y(0) at each arm's calibrated +c. Anti-steerable = rows that move against the "
        "intended direction.",
        "",
        markdown_table(pd.DataFrame(seed_rows)),
        "",
    ]
    if tests:
        test_rows = []
        for t, p_adj in zip(tests, adjusted, strict=True):
            test = t["test"]
            verdict = "significant" if p_adj < alpha else "not significant"
            test_rows.append(
                {
                    "method": labels.get(t["method"], t["method"]),
                    "vs": labels.get(t["vs"], t["vs"]),
                    "ranking test": "yes" if t.get("ranking") else "",
                    "difference [95% CI]": f"{test.diff:+.3f} [{test.ci_low:+.3f}, {test.ci_high:+.3f}]",
                    "p": f"{test.p_value:.3g}",
                    "Holm p": f"{p_adj:.3g}",
                    "": verdict,
                }
            )
        lines += [
            f"Hierarchical paired bootstrap ({n_boot} resamples of seeds, then rows), two-sided, Holm-corrected "
            f"over the {len(tests)} tests (the ranking verdict's test, winner vs runner-up, is one of them):",
            "",
            markdown_table(pd.DataFrame(test_rows)),
            "",
        ]
    lines += [
        f"Ranking: {ranking_verdict(ranked, p_top, alpha)}.",
        "",
    ]
    return lines


def _top_two(ranked: dict[str, list[float]]) -> list[str]:
    return sorted(ranked, key=lambda m: float(np.mean(ranked[m])), reverse=True)[:2]


def _ranking_test(
    effects: dict[str, dict[int, np.ndarray]],
    ranked: dict[str, list[float]],
    tests: list[dict[str, Any]],
    n_boot: int,
) -> tuple[BootstrapTest | None, int | None]:
    """The winner-vs-runner-up test, or the index of a baseline test that already is that comparison."""
    top = _top_two(ranked)
    if len(top) < 2:
        return None, None
    same = [i for i, t in enumerate(tests) if {t["method"], t["vs"]} == set(top)]
    if same:  # prefer the test in the ranking's own direction (the p-value is two-sided either way)
        index = next((i for i in same if tests[i]["method"] == top[0]), same[0])
        return tests[index]["test"], index
    try:
        matrix = paired_seed_matrix(effects[top[0]], effects[top[1]])
    except ValueError:
        return None, None
    return hierarchical_bootstrap(matrix, n_boot=n_boot), None
