"""The `steerlab` command line: a thin layer over the library; each verb lives in steerlab.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from steerlab import __version__

COMMAND_MODULES = (
    "steerlab.commands.info",
    "steerlab.commands.extract",
    "steerlab.commands.calibrate",
    "steerlab.commands.eval",
    "steerlab.commands.bench",
    "steerlab.commands.report",
    "steerlab.commands.export",
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
        prog="steerlab",
        description="Steer language models and benchmark steering methods on identical rows at equal cost.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"steerlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                continue  # a verb whose module is not written yet
            raise
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("STEERLAB_DEBUG") == "1"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("steerlab: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line unless --debug
        if debug:
            raise
        print(f"steerlab: error: {error}", file=sys.stderr)
        print("steerlab: (run again with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
