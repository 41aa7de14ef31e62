"""`steerlab bench`: the main job. Extract, calibrate and evaluate every method of a config, resumably,
then write OUT/results.parquet, the per-row tables and OUT/report.md."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from steerlab.commands.scale_flags import add_scale_out_flags, apply_scale_out_flags


def _run(args: argparse.Namespace) -> int:
    from steerlab.bench import load_config, load_preset, run_bench

    if args.config and args.preset:
        raise ValueError("give a CONFIG.toml or --preset, not both")
    config = load_config(args.config) if args.config else load_preset(args.preset or "quick")
    if args.model:
        config.model = args.model
    if args.device:
        config.device = args.device
    apply_scale_out_flags(config, args)
    command = (
        ["steerlab", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else ["steerlab", *sys.argv[1:]]
    )
    result = run_bench(config, args.output, resume=args.resume, command=command, overwrite=args.overwrite)
    if result.report is not None:
        print(result.report)
    if result.failed:
        print(
            f"steerlab bench: {len(result.failed)} unit(s) failed or were blocked; see {args.output}/bench.log",
            file=sys.stderr,
        )
        for name, error in list(result.failed.items())[:10]:
            print(f"  {name}: {error}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="the main job: extract, calibrate, evaluate every method, then report",
        parents=[common],
        description="Run a bench config (model x behaviour x methods x seeds x evals) resumably: every unit of "
        "work is keyed by a hash of its inputs and written atomically; --resume reuses finished units and after "
        "a config change only the affected units run. Writes OUT/results.parquet, OUT/rows/, OUT/report.md.",
    )
    parser.add_argument("config", nargs="?", default=None, help="bench config TOML (default: --preset quick)")
    from steerlab.bench.config import PRESETS

    parser.add_argument("--preset", choices=PRESETS, default=None, help="a built-in config")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument("--resume", action="store_true", help="reuse finished units in OUT")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into an existing folder that is not a bench output"
    )
    parser.add_argument("-m", "--model", default=None, help="override the config's model spec")
    parser.add_argument("--device", default=None, help="force a device (cpu, cuda, mps)")
    add_scale_out_flags(parser)
    parser.set_defaults(run=_run)
