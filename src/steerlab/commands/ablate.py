"""`steerlab ablate`: which part of trained weight deltas carries the behaviour (resumable; writes a report)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def parse_eval_sets(pairs: list[str], evals: list[str]) -> dict[str, dict[str, Any]]:
    """``--set EVAL.KEY=VALUE`` (or ``KEY=VALUE`` for every eval) -> per-eval options."""
    from steerlab.commands.extract import parse_options

    options: dict[str, dict[str, Any]] = {name: {} for name in evals}
    for key, value in parse_options(pairs).items():
        target, _, option = key.rpartition(".")
        if target and target not in options:
            raise ValueError(f"--set {key}=...: {target!r} is not one of the -e evals {evals}")
        for name in [target] if target else evals:
            options[name][option] = value
    return options


def _thresholds(args: argparse.Namespace) -> Any:
    from steerlab.analysis.verdicts import Thresholds

    return Thresholds(high=args.high, low=args.low)


def _ks(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers like 8,32,64, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{flag}: expected positive integers, got {text!r}")
    return values


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from steerlab.analysis.api import ablate, parse_families
    from steerlab.analysis.variants import VariantOptions
    from steerlab.evals import get_eval
    from steerlab.models import load_model

    families = parse_families(args.variants)  # fail fast, before loading a model
    for directory in args.intervention:
        if not (Path(directory) / "intervention.json").is_file():
            raise ValueError(f"-i {directory}: not an intervention directory (no intervention.json)")
    for name in args.eval:
        get_eval(name)
    eval_options = parse_eval_sets(args.set or [], args.eval)
    shared, own = _ks(args.k, "--k"), _ks(args.own_k, "--own-k")
    options = VariantOptions(
        seed=args.seed, random_draws=args.random_draws, norm_controls=not args.no_controls
    )
    if shared or own:
        options = dataclasses.replace(
            options, strict_k=True, shared_k=shared or options.shared_k, own_k=own or options.own_k
        )
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)

    def quiet(message: str) -> None:
        return None

    table = ablate(
        model,
        tok,
        args.intervention,
        args.eval,
        families,
        coeff=args.coeff,
        out=args.output,
        eval_options=eval_options,
        options=options,
        arms=args.arms,
        recalibrate=args.recalibrate,
        reuse_prefix=not args.no_prefix_reuse,
        thresholds=_thresholds(args),
        n_boot=args.n_boot,
        seed=args.seed,
        progress=quiet if args.quiet else None,  # None: the CLI's progress channel
    )
    print(f"{len(table)} rows -> {args.output}/ablations.parquet; report: {args.output}/report.md")
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "ablate",
        help="which part of a weight delta steers (keep/drop ablations)",
        parents=[common],
        description="Build keep/drop variants of trained weight deltas (cross-adapter and own SVD bases, "
        "layers and modules, S-space crops, the base weight's SVD lens, family-native splits), evaluate them on "
        "the same rows at the full delta's calibrated |c|, and write ablations.parquet and report.md. "
        "Resumable: rerun the same command after a kill.",
    )
    parser.add_argument("-m", "--model", default="smollm2-135m", help="model spec (default: smollm2-135m)")
    parser.add_argument("-i", "--intervention", nargs="+", required=True, help="weight-delta directories")
    parser.add_argument("-e", "--eval", action="append", required=True, help="eval suite (repeatable)")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument("--variants", default=None, help="families: cross,layer,param,native (default all)")
    parser.add_argument(
        "--coeff", type=float, default=None, help="|c| for every adapter (default: calibrated)"
    )
    parser.add_argument("--recalibrate", action="store_true", help="re-calibrate each variant to the same KL")
    parser.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help="run every variant's full forward (default: reuse the base's hidden states below its first layer)",
    )
    parser.add_argument(
        "--arms", choices=("positive", "both"), default="positive", help="+c only, or -c and +c"
    )
    parser.add_argument("--k", default=None, help="shared/random basis K values (default 8,32,64; clipped)")
    parser.add_argument("--own-k", default=None, help="own-SVD top-K values (default 8,32; clipped)")
    parser.add_argument("--random-draws", type=int, default=3, help="random-null draws per K (default 3)")
    parser.add_argument("--no-controls", action="store_true", help="no norm-matched random controls")
    parser.add_argument("--set", action="append", metavar="[EVAL.]KEY=VALUE", help="eval option, repeatable")
    parser.add_argument("--high", type=float, default=0.7, help="verdict threshold 'retains' (default 0.7)")
    parser.add_argument("--low", type=float, default=0.3, help="verdict threshold 'removes' (default 0.3)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random bases and the bootstrap")
    parser.add_argument("--device", default=None, help="force a device (cpu, cuda, mps)")
    parser.add_argument("--dtype", default=None, help="force a dtype (float32, bfloat16, float16)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=_run)
