"""`steerlab bench`: the main job. Extract, calibrate and evaluate every method of a config, resumably,
then write OUT/results.parquet, the per-row tables and OUT/report.md."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from steerlab.commands.scale_flags import add_scale_out_flags, apply_scale_out_flags


def apply_sets(config: Any, items: list[str]) -> Any:
    """``--set KEY=VALUE`` on a loaded config (dotted keys reach tables: ``coefficients.extra=[1.0]``);
    values parse as JSON when they can, else are strings. The result is re-read like a config file."""
    import json

    from steerlab.bench.config import ConfigError, dump_toml, parse_config

    data = config.as_dict()
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. model=Qwen/Qwen2.5-0.5B-Instruct)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *tables, last = key.split(".")
        target = data
        for name in tables:
            target = target.setdefault(name, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {item!r}: {name!r} is not a table of the config")
        target[last] = value
    return parse_config(dump_toml(data), source=f"{config.source} with --set {' '.join(items)}")


def _run(args: argparse.Namespace) -> int:
    from steerlab.bench import load_config, load_preset, run_bench

    if args.config and args.preset:
        raise ValueError("give a CONFIG.toml or --preset, not both")
    config = load_config(args.config) if args.config else load_preset(args.preset or "quick")
    if args.set:
        config = apply_sets(config, args.set)
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
    from steerlab.bench.config import PRESETS  # torch-free

    parser.add_argument("--preset", choices=PRESETS, default=None, help="a built-in config")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument("--resume", action="store_true", help="reuse finished units in OUT")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into an existing folder that is not a bench output"
    )
    parser.add_argument("-m", "--model", default=None, help="override the config's model spec")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, repeatable (model=..., n_boot=2000, coefficients.extra=[1.0])",
    )
    parser.add_argument("--device", default=None, help="force a device (cpu, cuda, mps)")
    add_scale_out_flags(parser)
    parser.set_defaults(run=_run)
