"""Wall time of the unsupervised methods with their default settings (target: under 5 minutes each on
smollm2-135m with 2 CPU cores). Prints seconds, the budget ratio (300 s / time, target >= 1.0) and the
machine's load average, since the machine may be shared.

    .venv/bin/python benchmarks/unsupervised_time.py [--methods melbo,power_iter] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

BUDGET_SECONDS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--behavior", default="honesty")
    parser.add_argument("--methods", default="melbo,power_iter")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import steerlab as sl
    from steerlab.methods import extract

    model, tok = sl.load_model(args.model, device="cpu", dtype="float32")
    for method in args.methods.split(","):
        before = os.getloadavg()[0]
        start = time.perf_counter()
        bank = extract(model, tok, args.behavior, method)
        seconds = time.perf_counter() - start
        after = os.getloadavg()[0]
        extra = bank.meta.get("singular_values") or bank.meta.get("objectives")
        print(
            f"{method}: {seconds:.1f} s for {bank.size} vectors at layer {bank.meta['source_layer']} -> "
            f"{bank.meta['target_layer']}, radius {bank.meta['radius']:.3g}; budget ratio {BUDGET_SECONDS / seconds:.2f} "
            f"(target >= 1.0); load average {before:.2f} -> {after:.2f} on {os.cpu_count()} cores",
            flush=True,
        )
        print(
            f"  {'singular values' if 'singular_values' in bank.meta else 'objectives'}: "
            f"{[round(float(x), 3) for x in (extra or [])]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
