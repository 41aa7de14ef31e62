"""One iso-KL evaluation as calibration runs it now vs two teacher-forced passes, on smollm2-135m, in one run.

Now (``steerlab.calibrate.measure_kl`` inside a search): the greedy rollout's own next-token log-probs are
the steered side (``steerlab.generation.greedy_rollout``) and the base side runs only the rollout on the
prompts' KV cache, stored once per search (``steerlab.base_kv.PromptKV``). Before: the rollout was
teacher-forced through the steered model and through the base model, prompt and all
(``steerlab.token_kl.token_kl``), which this script still runs for comparison (the rollout through ``generate_ids``, as before).

The intervention is the quick preset's mean_diff (honesty, 64 pairs) at |c| = 1.1, both arms in one batch,
on the quick preset's 8 calibration prompts, T = 20. Rounds interleave (now, before, now, ...) after one
warm-up of each; the load average is printed with the numbers, and so is the largest |difference| between
the two ways' KL values (float round-off).

    .venv/bin/python benchmarks/kl_eval.py [--rounds 3] [--n-prompts 8] [--coeff 1.1] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import steerlab as sl
from machine import load_text
from steerlab.calibrate import CalibrationConfig, calibration_prompts, kl_measurer
from steerlab.chat import format_chat
from steerlab.generation import generate_ids
from steerlab.prefix_reuse import ReuseStore, reuse_scope, steered_rows
from steerlab.token_kl import token_kl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-pairs", type=int, default=64, help="mean_diff pairs (the quick preset's 64)")
    parser.add_argument("--n-prompts", type=int, default=8, help="calibration prompts (the quick preset's 8)")
    parser.add_argument("--coeff", type=float, default=1.1, help="|c| (near the quick preset's 1-nat c)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    intervention = sl.extract(model, tok, "honesty", "mean_diff", n_pairs=args.n_pairs)
    config = CalibrationConfig(n_prompts=args.n_prompts)
    users = calibration_prompts(args.n_prompts)
    _users, kl_at = kl_measurer(model, tok, intervention, config, users)
    store = ReuseStore()  # as kl_measurer: the passes below the first steered block are reused

    def now() -> tuple[float, float]:
        start = time.perf_counter()
        point = kl_at(args.coeff)
        return time.perf_counter() - start, point.kl

    def before() -> tuple[float, float]:
        start = time.perf_counter()
        texts = [format_chat(tok, user) for user in users] * 2
        signed = [args.coeff] * len(users) + [-args.coeff] * len(users)
        steer = lambda: steered_rows(model, intervention, signed)  # noqa: E731
        with reuse_scope(store):
            with steer():
                rollouts = generate_ids(
                    model,
                    tok,
                    texts,
                    max_new_tokens=config.n_tokens,
                    max_batch=2 * config.max_batch,
                    stop_at_eos=False,
                )
            kls = token_kl(model, tok, texts, rollouts, steer, max_batch=2 * config.max_batch)
        arms = np.concatenate(kls[: len(users)]), np.concatenate(kls[len(users) :])
        kl = max(float(np.quantile(arm, config.quantile)) for arm in arms)
        return time.perf_counter() - start, kl

    now(), before()  # warm-up, and the stored prompt cache / prefix records of a search in progress
    times: dict[str, list[float]] = {"now": [], "before": []}
    values: dict[str, float] = {}
    print(f"before: {load_text()}")
    for round_number in range(args.rounds):
        for name, run in (("now", now), ("before", before)):
            seconds, values[name] = run()
            times[name].append(seconds)
        print(
            f"round {round_number + 1}: now {times['now'][-1]:.2f} s, before {times['before'][-1]:.2f} s, "
            f"before / now {times['before'][-1] / times['now'][-1]:.2f}x"
        )
    print(f"after: {load_text()}")
    now_s, before_s = statistics.median(times["now"]), statistics.median(times["before"])
    print(
        f"median of {args.rounds}: now {now_s:.2f} s, before {before_s:.2f} s per KL evaluation "
        f"(|c| = {args.coeff}, {args.n_prompts} prompts x 2 arms, T = {config.n_tokens}, {args.threads} "
        f"threads); before / now = {before_s / now_s:.2f}x"
    )
    print(
        f"KL now {values['now']:.6f}, before {values['before']:.6f}, |difference| {abs(values['now'] - values['before']):.2e}"
    )


if __name__ == "__main__":
    main()
