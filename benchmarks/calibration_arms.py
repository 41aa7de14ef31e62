"""One iso-KL evaluation with both arms in one batch vs two sequential arms, on smollm2-135m, in one run.

``measure_kl`` at |c| with ``arms="both"`` rolls out +c and -c and runs the base side over each rollout.
An intervention that steers rows apart (activation hooks: ``apply_rows``) runs both arms as one batch of
2 x n_prompts rows (``steerlab.calibrate_arms``); ``batch_arms=False`` forces the two sequential arms of
before. Small matrix products run far below peak on CPU, so the batched evaluation should cost well under
two sequential arms.

The intervention is mean_diff on the built-in honesty behaviour (few pairs). Rounds are interleaved
(batched, sequential, batched, ...) after one warm-up of each, since the machine is shared; the load
average is printed with the numbers, and so is the largest |difference| between the two paths' KL values
(they agree to float round-off). Last, one batched evaluation is split into its greedy rollout (which gives
the steered log-probs) and its base pass.

    .venv/bin/python benchmarks/calibration_arms.py [--rounds 3] [--n-prompts 8] [--coeff 1.0] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch

import steerlab as sl
from machine import load_text
from steerlab.base_kv import PromptKV
from steerlab.calibrate import CalibrationConfig, KLPoint, measure_kl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--behavior", default="honesty")
    parser.add_argument("--n-pairs", type=int, default=8)
    parser.add_argument("--n-prompts", type=int, default=8, help="off-task prompts (the quick preset's 8)")
    parser.add_argument("--coeff", type=float, default=1.0, help="|c| of the KL evaluation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    intervention = sl.extract(model, tok, args.behavior, "mean_diff", n_pairs=args.n_pairs)
    print(f"{args.model}: {intervention!r}")
    config = CalibrationConfig(n_prompts=args.n_prompts)
    base_kv = PromptKV(model, tok, 2 * config.max_batch)  # as in a search: the base prompts run once

    def run(batched: bool) -> tuple[float, KLPoint]:
        start = time.perf_counter()
        point = measure_kl(model, tok, intervention, args.coeff, config, batch_arms=batched, base_kv=base_kv)
        return time.perf_counter() - start, point

    run(True), run(False)  # warm-up: first-call costs (allocations, caches) out of the timings
    times: dict[bool, list[float]] = {True: [], False: []}
    points: dict[bool, KLPoint] = {}
    print(f"before: {load_text()}")
    for round_number in range(args.rounds):
        for batched in (True, False):
            seconds, points[batched] = run(batched)
            times[batched].append(seconds)
        ratio = times[False][-1] / times[True][-1]
        print(
            f"round {round_number + 1}: batched {times[True][-1]:.2f} s, sequential {times[False][-1]:.2f} s, "
            f"sequential / batched {ratio:.2f}x"
        )
    print(f"after: {load_text()}")
    batched_s, sequential_s = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"median of {args.rounds}: batched {batched_s:.2f} s, sequential {sequential_s:.2f} s per KL "
        f"evaluation (|c| = {args.coeff}, {args.n_prompts} prompts x 2 arms, T = {config.n_tokens}, "
        f"{args.threads} threads); speed-up sequential / batched = {sequential_s / batched_s:.2f}x"
    )
    fields = ("kl", "kl_pos", "kl_neg", "mean_kl")
    values = {batched: asdict(point) for batched, point in points.items()}
    print(
        "KL values (batched | sequential): "
        + ", ".join(f"{f} {values[True][f]:.6f} | {values[False][f]:.6f}" for f in fields)
    )
    difference = max(abs(float(values[True][f]) - float(values[False][f])) for f in fields)
    print(f"max |difference| of the KL values: {difference:.2e}")
    with timed_parts() as parts:
        seconds, _point = run(True)
    print(
        f"one batched evaluation, {seconds:.2f} s: "
        + ", ".join(f"{name} {value:.2f} s ({100 * value / seconds:.0f}%)" for name, value in parts.items())
    )


@contextlib.contextmanager
def timed_parts() -> Iterator[dict[str, float]]:
    """Seconds spent in a KL evaluation's greedy rollout (which gives the steered log-probs too) and in its
    base pass on the prompts' stored cache."""
    import steerlab.base_kv as base_kv
    import steerlab.generation as generation

    parts = {"rollout": 0.0, "base pass": 0.0}
    rollout, logprobs = generation.greedy_rollout, base_kv.PromptKV.logprobs

    def timed(function: Any, part: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[part] += time.perf_counter() - start

        return wrapper

    generation.greedy_rollout = timed(rollout, "rollout")
    base_kv.PromptKV.logprobs = timed(logprobs, "base pass")  # type: ignore[method-assign]
    try:
        yield parts
    finally:
        generation.greedy_rollout = rollout
        base_kv.PromptKV.logprobs = logprobs  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
