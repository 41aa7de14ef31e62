"""Time and memory of `steerlab ablate`: the default variant set for several families on smollm2-135m.

Target (issue 13): lora, pissa, delora (one seed each, extractions cached), the default variant families,
on sycophancy-claims held-out plus the daily-dilemmas rows available, under 30 min on a 2-core machine
with peak RSS under 4 GiB. Prints the wall time, the peak RSS, the variant-building time per adapter, and
the per-variant scoring cost (median and total per ablation family), measured in this one run.

    .venv/bin/python benchmarks/ablate_time.py [--families lora,pissa,delora] [--evals sycophancy-claims,daily-dilemmas-honesty]
        [--variants cross,layer,param,native] [--coeff 4] [--out /tmp/ablate-bench] [--threads 2]
        [--no-prefix-reuse]

Extraction (contrast generation + training) is done first and timed apart; pass --coeff to skip calibration
(otherwise each adapter is calibrated once, also timed apart). Rerunning with the same --out resumes.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--behavior", default="sycophancy")
    parser.add_argument("--families", default="lora,pissa,delora")
    parser.add_argument("--evals", default="sycophancy-claims,daily-dilemmas-honesty")
    parser.add_argument("--variants", default=None, help="variant families (default: all)")
    parser.add_argument("--coeff", type=float, default=None, help="|c| for all (default: calibrate each)")
    parser.add_argument("--out", default="/tmp/steerlab-ablate-bench")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--no-prefix-reuse", action="store_true", help="full forward per variant (writes OUT/ablate-noreuse)"
    )
    args = parser.parse_args()

    import pandas as pd
    import torch

    import steerlab as sl
    from steerlab.calibrate import CalibrationConfig, calibrate

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    model, tok = sl.load_model(args.model)
    out = Path(args.out)
    directories = []
    for family in args.families.split(","):
        directory = out / "interventions" / f"ws-{family}"
        if not (directory / "intervention.json").is_file():
            t0 = time.perf_counter()
            delta = sl.extract(model, tok, args.behavior, f"ws-{family}", seed=0)
            delta.save(directory)
            print(f"  extract ws-{family}: {time.perf_counter() - t0:.1f} s", flush=True)
            if args.coeff is None:
                t0 = time.perf_counter()
                calibrate(model, tok, delta, CalibrationConfig(), directory=directory)
                print(f"  calibrate ws-{family}: {time.perf_counter() - t0:.1f} s", flush=True)
        directories.append(directory)
    before_ablate = time.perf_counter()
    lines: list[str] = []

    def progress(message: str) -> None:
        lines.append(message)
        print(f"  [{(time.perf_counter() - before_ablate) / 60:5.1f} min] {message}", flush=True)

    table = sl.ablate(
        model,
        tok,
        directories,
        evals=args.evals.split(","),
        variants=args.variants,
        coeff=args.coeff,
        out=out / ("ablate-noreuse" if args.no_prefix_reuse else "ablate"),
        progress=progress,
        reuse_prefix=not args.no_prefix_reuse,
    )
    ablate_seconds = time.perf_counter() - before_ablate
    built = [line for line in lines if " variants in " in line]
    print("\n".join(f"  {line}" for line in built))
    per = table[table["coeff"] > 0]
    cost = per.groupby("ablation")["seconds"].agg(["count", "median", "sum"])
    print("per-variant scoring cost by ablation family (s):")
    print(cost.to_string(float_format=lambda x: f"{x:.2f}"))
    print(f"variants x evals x adapters: {len(per)}; c = 0 base scores shared across all of them")
    print(f"ablate wall time: {ablate_seconds / 60:.1f} min (target < 30 min for 3 families)")
    print(f"total wall time incl. load/extract/calibrate: {(time.perf_counter() - started) / 60:.1f} min")
    print(f"peak RSS: {peak_rss_gib():.2f} GiB (target < 4 GiB)")
    print(f"load average after: {os.getloadavg()}")
    pd.set_option("display.width", 160)


if __name__ == "__main__":
    main()
