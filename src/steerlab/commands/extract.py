"""`steerlab extract`: make an intervention with any registered method and save it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values parse as JSON when they can (numbers, lists, bools), else strings."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    return options


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: write into an existing folder holding other files (only steerlab's files replaced)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an existing directory that holds files steerlab did not write; only steerlab's own "
        "files there are replaced",
    )


def _run(args: argparse.Namespace) -> int:
    from steerlab.atomic import check_output_dir
    from steerlab.behaviors import get_behavior
    from steerlab.interventions.base import OWNED_FILES
    from steerlab.methods import extract, get_method
    from steerlab.methods.registry import make_config
    from steerlab.models import load_model
    from steerlab.options import parse_set_pairs

    # every check that can fail runs before the model loads and before anything is written
    spec = get_method(args.method)
    options = parse_set_pairs(spec.config_cls, args.set or [])
    config = make_config(spec, options)  # the config's own value checks
    behavior = get_behavior(args.behavior)
    from steerlab.methods.contrast_data import check_contrast_data

    check_contrast_data(behavior, config, spec.name)  # e.g. source=scenarios on a trait without any
    check_output_dir(args.output, OWNED_FILES, overwrite=args.overwrite)
    from steerlab.commands.scale_flags import placement_args

    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype, **placement_args(args))
    intervention = extract(model, tokenizer, args.behavior, args.method, seed=args.seed, config=options)
    path = intervention.save(args.output, overwrite=args.overwrite)
    print(f"saved {intervention!r} to {path}", file=sys.stderr)
    print(path)
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="make an intervention (any method family)",
        parents=[common],
        description="Make an intervention for a behaviour with a registered method and save it as a directory.",
    )
    parser.add_argument("-m", "--model", default="smollm2-135m", help="model spec (default: smollm2-135m)")
    parser.add_argument("-b", "--behavior", required=True, help="behaviour name or behaviour file")
    parser.add_argument("--method", required=True, help="method name (see `steerlab methods`)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, repeatable")
    parser.add_argument("--device", default=None, help="force a device (cpu, cuda, mps)")
    parser.add_argument("--dtype", default=None, help="force a dtype (float32, bfloat16, float16)")
    from steerlab.commands.scale_flags import add_placement_flags

    add_placement_flags(parser)
    parser.add_argument("-o", "--output", required=True, help="intervention directory to write")
    add_overwrite_flag(parser)
    parser.set_defaults(run=_run)
