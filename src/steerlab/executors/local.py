"""The `local` executor (the default): every unit in this process, one after another, in plan order."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steerlab.bench.plan import Unit
from steerlab.bench.units import UnitWorker
from steerlab.executors.base import EXECUTORS, ExecutorSpec, UnitDriver, blockers

__all__ = ["LocalExecutor", "LocalOptions"]


@dataclass
class LocalOptions:
    """The local executor has no options (threads come from --threads / STEERLAB_THREADS)."""


class LocalExecutor:
    """Computes each unit with one in-process `UnitWorker`; the model loads once, before the first unit."""

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()

    def run(self, units: Sequence[Unit], driver: UnitDriver) -> None:
        worker = UnitWorker(driver.config, driver.model, driver.tokenizer, note=driver.note)
        driver.set_parallelism(1)
        for unit in units:
            needs = blockers(unit, driver.status)
            if needs:
                driver.block(unit, needs)
                continue
            worker.model()  # loaded before the first unit that needs it, outside that unit's timing
            driver.begin(unit)
            inputs = driver.inputs(unit)

            def write(tmp: Path, unit: Unit = unit, inputs: dict[str, Path] = inputs) -> None:
                worker.compute(unit, inputs, tmp)

            try:
                driver.publish(unit, write)
            except Exception as error:  # one unit failing must not lose the others
                driver.fail(unit, f"{type(error).__name__}: {error}", traceback.format_exc())


EXECUTORS.add(
    "local",
    ExecutorSpec("local", LocalOptions, LocalExecutor, "every unit in this process, one after another"),
)
