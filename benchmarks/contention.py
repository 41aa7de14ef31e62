"""Steerlab beside other CPU jobs: a fixed scoring + generation workload alone, then beside one and two
CPU-bound competitors, printing each slowdown against the fair-share slowdown.

A competitor is a job that keeps every core busy (one busy Python process per core). Fair share: k of them
plus a workload of `threads` threads want k * cores + threads cores, so the workload slows by at least
max(1, (k * cores + threads) / cores). The target is a
slowdown no worse than 1.3x that. Each workload runs in a fresh subprocess so the thread policy (threads,
OMP_WAIT_POLICY) is set before torch starts, exactly as the CLI does; pass --policy active to compare
OpenMP's default spin-wait with steerlab's passive default.

    .venv/bin/python benchmarks/contention.py [--model smollm2-135m] [--prompts 64] [--new-tokens 16]
        [--threads N] [--competitors 0,1,2] [--policy passive|active] [--rounds 1]
    .venv/bin/python benchmarks/contention.py --model tiny --prompts 8 --new-tokens 4   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

from steerlab.threads import available_cores

WORKLOAD = r"""
import json, sys, time
import torch
from steerlab.scoring import generate_ids, score_choices
model_name, n_prompts, new_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if model_name == "tiny":
    from steerlab.testing import tiny_model, tiny_tokenizer
    tok = tiny_tokenizer(); model = tiny_model(vocab_size=len(tok))
else:
    from steerlab.models import load_model
    model, tok = load_model(model_name, device="cpu", dtype="float32")
prompts = [f"Question {i}: is statement number {i * 7 % 13} about the weather true? Answer yes or no." for i in range(n_prompts)]
score_choices(model, tok, prompts[:2], "yes_no")  # warm-up
started = time.perf_counter()
score_choices(model, tok, prompts, "yes_no")
scored = time.perf_counter()
generate_ids(model, tok, prompts, max_new_tokens=new_tokens)
done = time.perf_counter()
print(json.dumps({"score_s": scored - started, "generate_s": done - scored, "threads": torch.get_num_threads()}))
"""


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) + " (1 / 5 / 15 min)"


def _burn(stop_at: float) -> None:
    """A CPU-bound competitor: pure Python arithmetic until `stop_at`."""
    x = 0
    while time.time() < stop_at:
        for i in range(100_000):
            x = (x * 31 + i) % 1_000_003


def run_workload(args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)})
    env["STEERLAB_THREADS"] = str(args.threads)
    env["OMP_WAIT_POLICY"] = args.policy.upper()
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD, args.model, str(args.prompts), str(args.new_tokens)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a model spec, or 'tiny' for a smoke run")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--competitors", default="0,1,2")
    parser.add_argument("--policy", choices=("passive", "active"), default="passive")
    parser.add_argument("--rounds", type=int, default=1, help="repeat and keep each setting's best time")
    args = parser.parse_args()
    cores = available_cores()
    counts = [int(c) for c in args.competitors.split(",")]
    load_before = os.getloadavg()
    print(f"cores {cores}, threads {args.threads}, OMP_WAIT_POLICY {args.policy}, model {args.model}")
    print(f"load average before: {_load(load_before)} (the competitors below add to it)", flush=True)
    best: dict[int, dict[str, float]] = {}
    for _ in range(args.rounds):
        for k in counts:
            stop_at = time.time() + 3600
            burners = [mp.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(k * cores)]
            for p in burners:
                p.start()
            try:
                result = run_workload(args)
            finally:
                for p in burners:
                    p.terminate()
                    p.join()
            for key in ("score_s", "generate_s"):
                best.setdefault(k, {})[key] = min(best.get(k, {}).get(key, float("inf")), result[key])
    alone = best.get(0)
    print(f"{'competitors':>11} {'score s':>9} {'gen s':>9} {'slowdown':>9} {'fair':>6} {'ratio':>6}")
    for k in counts:
        total = best[k]["score_s"] + best[k]["generate_s"]
        if alone is None:
            print(f"{k:>11} {best[k]['score_s']:>9.2f} {best[k]['generate_s']:>9.2f}")
            continue
        slowdown = total / (alone["score_s"] + alone["generate_s"])
        fair = max(1.0, (k * cores + args.threads) / cores)
        print(
            f"{k:>11} {best[k]['score_s']:>9.2f} {best[k]['generate_s']:>9.2f} {slowdown:>8.2f}x "
            f"{fair:>5.2f}x {slowdown / fair:>5.2f}"
        )
    print("target: ratio (slowdown / fair-share slowdown) <= 1.3; a competitor keeps every core busy")
    print(
        f"load average before: {_load(load_before)}, after: {_load(os.getloadavg())} "
        "(a 1-min load above the cores before the run means the 'alone' figure was not alone)"
    )


if __name__ == "__main__":
    main()
