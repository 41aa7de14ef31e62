"""Choice scoring with and without running each group's shared tokens once (`prefix_kv.shared_groups`).

Rows that share a stretch beyond the chat head (ai-risk-ab's question in both letter orders, tiny-mfv's
vignette in its two frames) can run that stretch once per group. This times `evaluate` for the quick
preset's choice-scored evals (with the preset's eval options) at (-c, +c) under its mean_diff vector, with grouping on and switched off, in
interleaved rounds after a warm-up, and prints the tokens each way (padded, as run), the speed-up and the
largest score difference (float round-off only). Measure alone: the load average is printed.

    .venv/bin/python benchmarks/shared_groups.py [--rounds 2] [--threads 2] [--coeff 1.1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

import steerlab as sl
import steerlab.scoring as scoring
from machine import load_text
from steerlab.bench import load_preset
from steerlab.evals import evaluate

CHOICE_EVALS = ("sycophancy-claims", "ai-risk-ab", "tiny-mfv")
"""The quick preset's evals that score choices (off-task scores continuations)."""


class TokenCount:
    """Counts the padded tokens of every forward pass `scoring.forward_logits` runs."""

    def __init__(self) -> None:
        self.tokens = 0
        self.original = scoring.forward_logits

    def __call__(self, model: Any, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.tokens += int(input_ids.numel())
        return self.original(model, input_ids, *args, **kwargs)


def run(
    model: Any, tok: Any, intervention: Any, config: Any, name: str, coeff: float, grouped: bool
) -> tuple[float, Any, int]:
    original_groups, counter = scoring.shared_groups, TokenCount()
    scoring.forward_logits = counter  # type: ignore[assignment]
    if not grouped:
        scoring.shared_groups = lambda suffixes, min_shared=0: None  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        options = dict(config.eval_options.get(name, {}))
        table = evaluate(model, tok, intervention, name, [-coeff, coeff], behavior=config.behavior, **options)
        return time.perf_counter() - start, table, counter.tokens
    finally:
        scoring.shared_groups, scoring.forward_logits = original_groups, counter.original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--coeff", type=float, default=1.1, help="the quick preset's calibrated c is about 1.1"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = load_preset("quick")
    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    options = dict(config.method_options.get("mean_diff", {}))
    intervention = sl.extract(model, tok, config.behavior, "mean_diff", **options)
    print(f"{args.model}, mean_diff ({config.behavior}) at c = +/-{args.coeff}; before: {load_text()}")
    total = {True: 0.0, False: 0.0}
    for name in CHOICE_EVALS:
        run(model, tok, intervention, config, name, args.coeff, True)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        tables, tokens = {}, {}
        for _ in range(args.rounds):
            for grouped in (True, False):
                seconds, tables[grouped], tokens[grouped] = run(
                    model, tok, intervention, config, name, args.coeff, grouped
                )
                times[grouped].append(seconds)
        on, off = statistics.median(times[True]), statistics.median(times[False])
        total[True] += on
        total[False] += off
        difference = float(np.max(np.abs(tables[True]["y"].to_numpy() - tables[False]["y"].to_numpy())))
        print(
            f"{name}: {tables[True]['row_id'].nunique()} rows; tokens run {tokens[False]} -> {tokens[True]} "
            f"({tokens[True] / tokens[False]:.2f}); plain {off:.1f} s, grouped {on:.1f} s, "
            f"speed-up {off / on:.2f}x; max |dy| {difference:.1e}"
        )
    print(
        f"all three: plain {total[False]:.1f} s, grouped {total[True]:.1f} s, {total[False] / total[True]:.2f}x"
    )
    print(f"after: {load_text()}")


if __name__ == "__main__":
    main()
