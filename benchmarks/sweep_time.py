"""How long a judged layer x coefficient sweep takes, and where the time goes.

The issue's target: on a 2-core CPU, with the built-in model as both subject and judge, a 4-layer x
4-coefficient sweep over 10 questions per cell with 64 new tokens finishes in under 15 minutes, and a rerun
with a warm judge cache makes no judge calls. This script runs exactly that sweep through
`steerlab.sweeps` on the judged generation eval (``trait-eval`` by default) and prints:

- generation tokens/s (response tokens generated / seconds inside `steerlab.scoring.generate`),
- judge calls/s (judge-cache misses / seconds inside `steerlab.judges.judge_responses`),
- the judge cache hit rate (from the eval's "judge cache: H hits, M misses" log line),
- the split of wall time: generation, judging (on a worker thread overlapping generation for a remote judge; in turn for the in-process one), the rest.

With ``--rerun`` the same sweep runs again into a fresh unit store (every cell recomputed) with the judge
cache now warm: its judge calls should be 0.

    .venv/bin/python benchmarks/sweep_time.py [--trait sycophancy] [--layers 8:24:4] [--coeffs -4,-2,2,4]
        [--questions 10] [--tokens 64] [--rerun] [--threads 2]

It needs the judged eval to be registered; it stops with one clear line when it is not.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Meter:
    """Seconds spent inside wrapped functions, summed over threads, plus judge-cache counts from the log."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"generate": 0.0, "judge": 0.0}
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[label] += time.perf_counter() - started

        return timed


class CacheLog(logging.Handler):
    """Reads 'judge cache: H hits, M misses' lines logged by the judged eval."""

    PATTERN = re.compile(r"judge cache: (\d+) hits, (\d+) misses")

    def __init__(self, meter: Meter) -> None:
        super().__init__(logging.INFO)
        self.meter = meter

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.meter.hits += int(match.group(1))
            self.meter.misses += int(match.group(2))


def instrument(meter: Meter) -> None:
    """Time generation and judging where the judged eval looks them up (module attributes)."""
    import steerlab.scoring as scoring

    scoring.generate = meter.wrap("generate", scoring.generate)  # type: ignore[assignment]
    try:
        import steerlab.judges as judges
    except ImportError:
        return
    if hasattr(judges, "judge_responses"):
        judges.judge_responses = meter.wrap("judge", judges.judge_responses)  # type: ignore[attr-defined]


def response_tokens(tok: Any, cells: list[Any]) -> int:
    return sum(
        len(tok(str(text), add_special_tokens=False).input_ids)
        for table in cells
        for text in table["response"]
    )


def one_sweep(args: argparse.Namespace, model: Any, tok: Any, store_dir: Path, cache_dir: Path) -> None:
    from steerlab.bench.store import UnitStore
    from steerlab.models import num_layers
    from steerlab.sweeps.grid import Sweep, layer_targets, parse_layers, run_grid

    meter = Meter()
    instrument(meter)
    handler = CacheLog(meter)
    logging.getLogger("steerlab").addHandler(handler)
    logging.getLogger("steerlab").setLevel(logging.INFO)
    store = UnitStore(store_dir)
    layers = parse_layers(args.layers, num_layers(model))
    coeffs = [float(c) for c in args.coeffs.split(",")]
    options = {"n_questions": args.questions, "max_new_tokens": args.tokens, "cache_dir": str(cache_dir)}
    started = time.perf_counter()
    targets = layer_targets(model, tok, store, behavior=args.trait, method=args.method, layers=layers)
    extracted = time.perf_counter()
    sweep = Sweep(model, tok, store, args.eval, args.trait, options, n_boot=200)
    run_grid(sweep, targets, coeffs)
    wall = time.perf_counter() - extracted
    logging.getLogger("steerlab").removeHandler(handler)
    import pandas as pd

    tables = [pd.read_parquet(p) for p in (store_dir / "cells").glob("*/rows.parquet")]
    tokens = response_tokens(tok, tables)
    gen, judge = meter.seconds["generate"], meter.seconds["judge"]
    lookups = meter.hits + meter.misses
    print(f"  extraction                {extracted - started:8.1f} s")
    print(
        f"  sweep wall                {wall:8.1f} s   ({len(sweep.evaluated)} cells, {len(layers)} layers x {len(coeffs)} coefficients + c=0)"
    )
    print(
        f"  generation                {gen:8.1f} s   {tokens / gen if gen else float('nan'):7.1f} tokens/s ({tokens} tokens)"
    )
    print(
        f"  judging                   {judge:8.1f} s   {meter.misses / judge if judge else float('nan'):7.2f} judge calls/s ({meter.misses} calls)"
    )
    print(
        f"  judge cache hit rate      {meter.hits / lookups if lookups else float('nan'):8.1%}   ({meter.hits} hits / {lookups} lookups)"
    )
    print(
        f"  overlap (gen+judge-wall)  {gen + judge - wall:8.1f} s;  other {max(0.0, wall - gen - judge):.1f} s"
    )
    print(
        f"  target 15 min: {'met' if extracted - started + wall < 900 else 'NOT met'} ({(extracted - started + wall) / 60:.1f} min)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument(
        "--eval", default="trait-eval", help="the judged generation eval (default trait-eval)"
    )
    parser.add_argument("--trait", default="sycophancy")
    parser.add_argument("--method", default="mean_diff")
    parser.add_argument("--layers", default="8:24:4", help="A:B:S, B excluded (default 8:24:4: 4 layers)")
    parser.add_argument("--coeffs", default="-4,-2,2,4")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rerun", action="store_true", help="run again with the judge cache warm")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from steerlab.evals import list_evals

    names = [spec.name for spec in list_evals()]
    if args.eval not in names:
        print(
            f"sweep_time: eval {args.eval!r} is not registered (this checkout lacks the judged generation eval); "
            f"registered evals: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    import torch

    from steerlab.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)
    started = time.perf_counter()
    model, tok = load_model(args.model)
    with tempfile.TemporaryDirectory(prefix="sweep_time-") as tmp:
        root = Path(tmp)
        print(
            f"cold judge cache: {args.model} subject and judge, {args.questions} questions, {args.tokens} new tokens"
        )
        one_sweep(args, model, tok, root / "run1", root / "judge-cache")
        if args.rerun:
            print("warm judge cache, fresh unit store (every cell regenerated, no judge call expected):")
            one_sweep(args, model, tok, root / "run2", root / "judge-cache")
    print(f"load average after: {os.getloadavg()}", flush=True)
    print(
        f"this process: {time.process_time():.0f} s of CPU in {time.perf_counter() - started:.0f} s of wall time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
