"""`steerlab bench`: run a config (model x behaviour x methods x seeds x evals) resumably and write results.

Importing this package does not import torch: configs, presets and the unit store are plain Python;
`run_bench` loads the model stack when it is called.
"""

from __future__ import annotations

from typing import Any

from steerlab.bench.config import (
    PRESETS,
    BenchConfig,
    ConfigError,
    NullBand,
    Selection,
    load_config,
    load_preset,
    parse_config,
)
from steerlab.bench.store import UnitStore

__all__ = [
    "PRESETS",
    "BenchConfig",
    "ConfigError",
    "NullBand",
    "Selection",
    "UnitStore",
    "load_config",
    "load_preset",
    "parse_config",
    "run_bench",
]


def run_bench(*args: Any, **kwargs: Any) -> Any:
    """See :func:`steerlab.bench.runner.run_bench`."""
    from steerlab.bench.runner import run_bench as run

    return run(*args, **kwargs)
