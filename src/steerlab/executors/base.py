"""The Executor plug-in kind: who computes a bench plan's units, and where.

An executor receives the units still to run (in plan order, dependencies first) and a `UnitDriver`.
The driver owns everything durable: it publishes a unit's files through the atomic `UnitStore`, keeps
each unit's status, and drives the one progress display. An executor only decides where and when
`UnitWorker.compute` runs, so `--resume`, the results table and the report are the same whichever
executor ran.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from steerlab.bench.config import BenchConfig
from steerlab.bench.plan import Unit
from steerlab.bench.store import UnitStore
from steerlab.registry import Registry

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorSpec",
    "UnitDriver",
    "blockers",
    "get_executor",
    "make_executor",
    "pack_dir",
    "resolved",
    "unpack_dir",
]


class UnitDriver(Protocol):
    """What the bench driver offers an executor; every durable write goes through it."""

    config: BenchConfig
    store: UnitStore  # OUT/units: an executor reads input units (shared baselines too) through `inputs`
    model: Any
    tokenizer: Any
    status: dict[str, str]

    def inputs(self, unit: Unit) -> dict[str, Path]:
        """The published directory of each unit `unit` depends on."""
        ...

    def begin(self, unit: Unit) -> None:
        """`unit` starts computing (progress display, log, timing)."""
        ...

    def requeue(self, unit: Unit, reason: str) -> None:
        """`unit` was started but will run again (its worker died)."""
        ...

    def publish(self, unit: Unit, write: Callable[[Path], None]) -> None:
        """Seal the files `write` puts in a fresh directory and publish them as `unit`'s result."""
        ...

    def fail(self, unit: Unit, error: str, detail: str = "") -> None:
        """`unit` failed with `error` (one line); `detail` (a traceback) goes to the log only."""
        ...

    def block(self, unit: Unit, needs: Sequence[str]) -> None:
        """`unit` cannot run because the units `needs` failed or were blocked."""
        ...

    def note(self, message: str) -> None:
        """A detail of a running unit, for the log."""
        ...

    def set_parallelism(self, workers: int) -> None:
        """How many units run at once (the ETA divides by it)."""
        ...


class Executor(Protocol):
    """Runs units; must resolve each given unit exactly once (publish, fail or block)."""

    def run(self, units: Sequence[Unit], driver: UnitDriver) -> None: ...


@dataclass(frozen=True)
class ExecutorSpec:
    """A registered executor: its options dataclass (the TOML ``[executor_options]`` table) and factory."""

    name: str
    options_cls: type
    factory: Callable[[Any], Executor]
    description: str


EXECUTORS: Registry[ExecutorSpec] = Registry("executor")


def get_executor(name: str) -> ExecutorSpec:
    """The spec registered as `name` (importing the built-in executors first)."""
    import steerlab.executors  # noqa: F401  (registers local and ray)

    return EXECUTORS.get(name)


def make_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """Build executor `name` from its options; an unknown option names the valid ones."""
    spec = get_executor(name)
    valid = [f.name for f in dataclasses.fields(spec.options_cls)]
    for key in options or {}:
        if key not in valid:
            raise ValueError(
                f"[executor_options] has no option {key!r} for executor {name!r}; valid: {valid}"
            )
    return spec.factory(spec.options_cls(**dict(options or {})))


# ---------------------------------------------------------------------------------------------- scheduling


def blockers(unit: Unit, status: Mapping[str, str]) -> list[str]:
    """Dependencies of `unit` that ended without a result (failed or blocked)."""
    return [d for d in unit.depends if status.get(d) in ("failed", "blocked")]


def resolved(unit: Unit, status: Mapping[str, str]) -> bool:
    """Every dependency of `unit` has finished one way or another."""
    return all(status.get(d) in ("done", "failed", "blocked") for d in unit.depends)


# ---------------------------------------------------------------------------------------------- shipping files


def pack_dir(root: Path) -> dict[str, bytes]:
    """Every file under `root` as relative path -> bytes (how unit files travel to and from workers)."""
    files = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def unpack_dir(files: Mapping[str, bytes], root: Path) -> None:
    """Write `pack_dir`'s output under `root`; refuses paths that leave `root`."""
    for relative, data in files.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ValueError(f"refusing to write {relative!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
