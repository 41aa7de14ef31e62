"""The bench on a local Ray cluster with 1 vs 2 workers (1 thread each): speed-up and scheduling overhead.

Runs the same config twice into fresh output directories, once with ``workers = 1`` and once with
``workers = 2``, on one local cluster of ``--cpus`` CPUs, and prints the wall-clock speed-up and the
per-unit overhead: the driver's time for a unit (dispatch to published) minus the worker's compute time
for it (both in OUT/bench.log), over units after each worker's first (which includes its model load).
Targets (issue 16): overhead under 5% of unit time; speed-up >= 1.6x with 2 workers on 2 cores. On a GPU
machine pass --gpus N to give each worker N GPUs (--gpus 1: one GPU per worker; --gpus 0.5: two workers
share each GPU, which is how one small model fills one large GPU).

    .venv/bin/python benchmarks/executor_scaling.py [--preset quick | --config my.toml] [--cpus 2] [--gpus N]
    .venv/bin/python benchmarks/executor_scaling.py --smoke     # tiny random model, seconds
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DONE = re.compile(r"published (\S+) ([0-9.]+)s after dispatch")
COMPUTED = re.compile(r"computed (\S+) in ([0-9.]+)s on pid (\d+)")


def overheads(log: str) -> tuple[list[float], list[float]]:
    """(overhead per unit, compute seconds per unit), skipping each worker's first unit."""
    driver = {m.group(1): float(m.group(2)) for m in DONE.finditer(log)}
    seen: set[str] = set()
    over, compute = [], []
    for m in COMPUTED.finditer(log):
        name, seconds, pid = m.group(1), float(m.group(2)), m.group(3)
        if pid not in seen:
            seen.add(pid)
            continue
        if name in driver:
            over.append(driver[name] - seconds)
            compute.append(seconds)
    return over, compute


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) + " (1 / 5 / 15 min)"


def run(config: Any, out: Path, workers: int, gpus: float, model: Any, tok: Any) -> tuple[float, str]:
    from steerlab.bench import run_bench

    config.executor = "ray"
    options: dict[str, Any] = {"workers": workers, "threads": 1}
    if gpus:
        options["resources"] = {
            kind: {"num_gpus": gpus} for kind in ("extract", "select", "calibrate", "eval")
        }
    config.executor_options = options
    started = time.perf_counter()
    result = run_bench(config, out, model=model, tokenizer=tok, render=False)
    if result.failed:
        raise SystemExit(f"{len(result.failed)} units failed; see {out}/bench.log")
    return time.perf_counter() - started, (out / "bench.log").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--config", default=None)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--gpus", type=float, nargs="?", const=1.0, default=0.0, help="GPUs per worker (0.5: two share one)"
    )
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and a tiny config")
    parser.add_argument("--out", default=None, help="keep the two output directories here")
    args = parser.parse_args()

    import ray

    from steerlab.bench import load_config, load_preset, parse_config

    model = tok = None
    if args.smoke:
        from steerlab.testing import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer()
        model = tiny_model(vocab_size=len(tok))

    def config() -> Any:
        if args.smoke:
            from steerlab.testing import tiny_bench_toml

            return parse_config('executor = "ray"\n' + tiny_bench_toml(), "smoke.toml")
        return load_config(args.config) if args.config else load_preset(args.preset)

    load_before = os.getloadavg()
    print(f"load average before: {_load(load_before)}", flush=True)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="steerlab-scaling-"))
    timings = {}
    for workers in (1, 2):
        seconds, log = run(config(), root / f"workers{workers}", workers, args.gpus, model, tok)
        over, compute = overheads(log)
        timings[workers] = seconds
        share = sum(over) / sum(compute) if compute and sum(compute) > 0 else float("nan")
        median = statistics.median(over) if over else float("nan")
        print(
            f"{workers} worker(s): {seconds:.1f}s wall; {len(over)} units measured, overhead per unit median "
            f"{median * 1000:.0f} ms, total {100 * share:.1f}% of unit compute time"
        )
    ray.shutdown()
    print(
        f"speed-up 2 vs 1 workers: {timings[1] / timings[2]:.2f}x (target >= 1.6x on 2 cores; overhead < 5%)"
    )
    print(f"outputs: {root}")
    print(
        f"load average before: {_load(load_before)}, after: {_load(os.getloadavg())} "
        f"({os.cpu_count()} cores; a 1-min load above the cores during the run means other jobs competed)"
    )


if __name__ == "__main__":
    main()
