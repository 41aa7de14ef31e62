"""An eval at several coefficients with and without reuse below the first steered block, on smollm2-135m.

An activation vector added at block k (or a weight delta from block k up) leaves blocks 0..k-1 as in the
base model, so `steerlab.prefix_reuse` runs them for the first coefficient of an eval call only and feeds
block k the stored states for the others. This times `evaluate` on the `unsupervised` preset's shape
(ai-risk-ab, letters balanced, binary rows; its fixed scales) for a unit random vector at the preset's
depth (block 7 of 30) and a mean_diff vector at its own layer, with reuse and with it switched off, in
interleaved rounds after a warm-up. The scores must be identical; the load average is printed with the
times. The ideal saving is k/L of the block compute for every coefficient after the first.

    .venv/bin/python benchmarks/prefix_reuse.py [--n-per-file 50] [--rounds 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

import steerlab as sl
from machine import load_text
from steerlab import ActivationAddition
from steerlab.evals import evaluate
from steerlab.models import num_layers


def timed(
    model: Any, tok: Any, intervention: Any, reuse: bool, args: argparse.Namespace
) -> tuple[float, pd.DataFrame]:
    if not reuse:
        intervention.first_changed_layer = lambda model: None  # this object only: no reuse
    try:
        start = time.perf_counter()
        table = evaluate(
            model,
            tok,
            intervention,
            "ai-risk-ab",
            args.coeffs,
            behavior="corrigibility",
            n_per_file=args.n_per_file,
            binary_only=True,
            balance_letters=True,
        )
        return time.perf_counter() - start, table
    finally:
        intervention.__dict__.pop("first_changed_layer", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--n-per-file", type=int, default=50, help="rows per ai-risk-ab file (the preset: 100)"
    )
    parser.add_argument("--coeffs", type=float, nargs="+", default=[-20.0, -10.0, -5.0, 5.0, 10.0, 20.0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    layers = num_layers(model)
    depth = layers // 4
    vector = np.random.default_rng(0).normal(size=model.config.hidden_size)
    arms = {
        f"random unit vector at block {depth}": ActivationAddition({depth: vector / np.linalg.norm(vector)}),
        "mean_diff (honesty)": sl.extract(model, tok, "honesty", "mean_diff", n_pairs=8),
    }
    small = argparse.Namespace(**{**vars(args), "n_per_file": 2, "coeffs": args.coeffs[:2]})
    print(f"{args.model}: {layers} blocks; ai-risk-ab {args.n_per_file} rows per file at c = {args.coeffs}")
    print(f"before: {load_text()}")
    for label, intervention in arms.items():
        first = intervention.first_changed_layer(model)
        timed(model, tok, intervention, True, small), timed(model, tok, intervention, False, small)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        tables: dict[bool, pd.DataFrame] = {}
        for _ in range(args.rounds):
            for reuse in (True, False):
                seconds, tables[reuse] = timed(model, tok, intervention, reuse, args)
                times[reuse].append(seconds)
        with_reuse, without = statistics.median(times[True]), statistics.median(times[False])
        n = len(args.coeffs)
        ideal = 1 / (1 - first / layers * (n - 1) / n)
        difference = float(np.max(np.abs(tables[True]["y"].to_numpy() - tables[False]["y"].to_numpy())))
        print(
            f"{label} (first changed block {first}): full {without:.1f} s, reuse {with_reuse:.1f} s, "
            f"speed-up {without / with_reuse:.2f}x (blocks only: {ideal:.2f}x); max |dy| {difference:.1e}"
        )
    print(f"after: {load_text()}")


if __name__ == "__main__":
    main()
