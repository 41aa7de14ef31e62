"""Run a bench plan: execute each unit not already done, resumably, then assemble results and the report."""

from __future__ import annotations

import json
import os
import shlex
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from steerlab.atomic import dump_json, write_atomic
from steerlab.bench.baseline import SHARED_DIR, attach_baselines
from steerlab.bench.config import BenchConfig, dump_toml, validate_names
from steerlab.bench.lock import check_bench_out, hold_output_lock, mark_killed_runs
from steerlab.bench.plan import Unit, build_plan, data_record
from steerlab.bench.progress import Progress, format_seconds
from steerlab.bench.store import UnitStore
from steerlab.bench.units import INTERVENTION_DIR
from steerlab.executors.base import make_executor

__all__ = ["INTERVENTION_DIR", "BenchError", "BenchResult", "dump_json", "run_bench"]


class BenchError(RuntimeError):
    """A bench run that cannot start (e.g. OUT holds a previous run and --resume was not given)."""


@dataclass
class BenchResult:
    out: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    report: Path | None = None


class _Driver:
    """The driver side of a run: publishes units through the store, keeps status, drives the display.

    Executors (steerlab.executors) call it; only it writes under OUT, so every executor's results are
    identical on disk and a killed run resumes the same way.
    """

    def __init__(
        self, config: BenchConfig, store: UnitStore, progress: Progress, model: Any, tokenizer: Any
    ) -> None:
        self.config, self.store, self.progress = config, store, progress
        self.model, self.tokenizer = model, tokenizer
        self.units: dict[str, Unit] = {}
        self.shared = UnitStore(store.root.parent / SHARED_DIR)
        self.extra: set[str] = set()  # units outside the plan (shared baselines): in OUT/shared, not counted
        self.status: dict[str, str] = {}
        self.result: BenchResult | None = None
        self._started: dict[str, float] = {}

    def unit_dir(self, name: str) -> Path:
        unit = self.units[name]
        return self._store_of(unit).path(unit.kind, unit.name)

    def _store_of(self, unit: Unit) -> UnitStore:
        return self.shared if unit.name in self.extra else self.store

    def add_extra(self, units: Sequence[Unit]) -> None:
        """Register units outside the plan (shared baselines); those already stored count as done."""
        for unit in units:
            self.units[unit.name] = unit
            self.extra.add(unit.name)
            if self.shared.record(unit.kind, unit.name, unit.key) is not None:
                self.status[unit.name] = "done"

    def inputs(self, unit: Unit) -> dict[str, Path]:
        return {name: self.unit_dir(name) for name in unit.depends}

    def begin(self, unit: Unit) -> None:
        self.status[unit.name] = "running"
        self._started[unit.name] = time.time()
        if unit.name in self.extra:
            self.progress.log(f"start {unit.kind} {unit.name} (shared by every arm)")
        else:
            self.progress.start(unit)

    def requeue(self, unit: Unit, reason: str) -> None:
        self.status.pop(unit.name, None)
        self._started.pop(unit.name, None)
        self.progress.requeue(unit, reason)

    def publish(self, unit: Unit, write: Callable[[Path], None]) -> None:
        with self._store_of(unit).writing(unit.kind, unit.name, unit.key, unit.inputs) as tmp:
            write(tmp)
        assert self.result is not None
        self.status[unit.name] = "done"
        if unit.name in self.extra:
            seconds = time.time() - self._started.pop(unit.name, time.time())
            self.progress.log(f"shared {unit.kind} {unit.name} ready in {seconds:.1f}s")
            return
        self.result.ran.append(unit.name)
        self.progress.finish(unit, time.time() - self._started.pop(unit.name, time.time()))

    def fail(self, unit: Unit, error: str, detail: str = "") -> None:
        assert self.result is not None
        self.status[unit.name] = "failed"
        self.result.failed[unit.name] = error
        if detail:
            self.progress.log(detail)
        if unit.name in self.extra:
            self.progress.log(f"FAIL  {unit.kind} {unit.name}: {error}")
            return
        self.progress.fail(unit, error)

    def block(self, unit: Unit, needs: Sequence[str]) -> None:
        assert self.result is not None
        self.status[unit.name] = "blocked"
        self.result.failed[unit.name] = f"blocked: needs {', '.join(needs)}"
        self.progress.fail(unit, self.result.failed[unit.name])

    def note(self, message: str) -> None:
        self.progress.note(message)

    def set_parallelism(self, workers: int) -> None:
        self.progress.parallel = max(1, int(workers))


def _prepare_out(out: Path, resume: bool) -> None:
    units = out / "units"
    if units.is_dir() and any(units.iterdir()) and not resume:
        raise BenchError(
            f"{out} holds units of a previous bench run; pass --resume to reuse them (only units whose inputs "
            "changed run again), or give an empty output directory"
        )
    out.mkdir(parents=True, exist_ok=True)


def run_bench(
    config: BenchConfig,
    out: str | Path,
    *,
    resume: bool = False,
    model: Any = None,
    tokenizer: Any = None,
    command: list[str] | None = None,
    stream: TextIO | None = None,
    render: bool = True,
    overwrite: bool = False,
) -> BenchResult:
    """Run every unit of `config` not already done under `out`, then write results and the report.

    `model`/`tokenizer` inject an already loaded model (tests use a tiny one); otherwise ``config.model``
    is loaded on the first unit that needs it, so a fully cached rerun never loads a model. The config is
    validated before OUT is created; OUT is then held under an exclusive lock for the whole run.
    """
    out = Path(out)
    started = time.time()
    validate_names(config)
    plan = build_plan(config)
    executor = make_executor(config.executor, config.executor_options)
    check_bench_out(out, overwrite=overwrite)
    cmd = command if command is not None else ["steerlab", "bench", str(out / "config.toml"), "-o", str(out)]
    with hold_output_lock(out, shlex.join(cmd)):
        _prepare_out(out, resume)
        return _run_locked(
            config, out, plan, executor, cmd, started, resume, model, tokenizer, stream, render
        )


def _start_history(out: Path, resume: bool, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The run history so far (runs killed midway marked as such), with this run recorded as running."""
    history: list[dict[str, Any]] = []
    if resume and (out / "run.json").is_file():
        try:
            history = json.loads((out / "run.json").read_text(encoding="utf-8")).get("history", [])
        except (json.JSONDecodeError, OSError, UnicodeDecodeError):
            history = []
    history = mark_killed_runs(history)
    write_atomic(out / "run.json", dump_json({"history": [*history, {**entry, "status": "running"}]}))
    return history


def _run_locked(
    config: BenchConfig,
    out: Path,
    plan: list[Unit],
    executor: Any,
    cmd: list[str],
    started: float,
    resume: bool,
    model: Any,
    tokenizer: Any,
    stream: TextIO | None,
    render: bool,
) -> BenchResult:
    from steerlab.bench.results import assemble

    progress = Progress(plan, log_path=out / "bench.log", stream=stream)
    driver = _Driver(config, UnitStore(out / "units"), progress, model, tokenizer)
    driver.units = {unit.name: unit for unit in plan}
    progress.log(f"bench start: {shlex.join(cmd)} ({len(plan)} units, config {config.source})")
    run_entry = {
        "command": shlex.join(cmd),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "pid": os.getpid(),
    }
    history = _start_history(out, resume, run_entry)
    for removed in [*driver.store.clean_partial(), *driver.shared.clean_partial()]:
        progress.log(f"removed partial unit {removed}")
    write_atomic(out / "config.toml", dump_toml(config.as_dict()))
    write_atomic(out / "plan.json", dump_json({"units": [u.describe() for u in plan]}))
    result = BenchResult(out=out)
    driver.result = result
    status = driver.status
    pending = []
    for unit in plan:
        if driver.store.record(unit.kind, unit.name, unit.key) is not None:
            status[unit.name] = "done"
            result.reused.append(unit.name)
            progress.skip(unit)
            continue
        discarded = getattr(driver.store, "last_discarded", None)
        if discarded:
            progress.log(f"discarded an incomplete unit: {discarded}")
            driver.store.last_discarded = ""
        pending.append(unit)
    if pending:
        progress.log(f"executor {config.executor}: {len(pending)} units to run")
        # each distinct c = 0 baseline the evals read runs once, as a unit of its own, before them
        work, baselines = attach_baselines(
            config, pending, lambda b: driver.shared.record(b.kind, b.name, b.key) is not None
        )
        driver.add_extra(baselines)
        executor.run(work, driver)
    for unit in pending:  # an executor must resolve every unit; anything left is a bug, not silence
        if status.get(unit.name) not in ("done", "failed", "blocked"):
            driver.fail(unit, f"executor {config.executor!r} returned without running this unit")
    if config.sweep is not None:  # a [sweep] table: resumable sweeps after the bench's units, in the driver
        from steerlab.bench.units import UnitWorker
        from steerlab.progress import progress_to
        from steerlab.sweeps.bench import run_bench_sweep

        model, tokenizer = UnitWorker(config, driver.model, driver.tokenizer, note=progress.note).model()
        with progress_to(lambda event: progress.note(event.line())):
            outcomes = run_bench_sweep(config, out, model, tokenizer)
        for method, outcome in outcomes.items():
            progress.log(f"sweep {method}: {outcome}")
            if outcome != "done":
                result.failed[f"sweep/{method}"] = outcome
    if config.ablate is not None:  # an [ablate] table: ablations of the calibrated weight deltas
        from steerlab.analysis.bench import run_bench_ablate
        from steerlab.bench.units import UnitWorker
        from steerlab.progress import progress_to

        model, tokenizer = UnitWorker(config, driver.model, driver.tokenizer, note=progress.note).model()
        with progress_to(lambda event: progress.note(event.line())):
            try:
                outcome = run_bench_ablate(config, out, driver.units, driver.unit_dir, model, tokenizer)
            except Exception as error:  # noqa: BLE001 (reported like a failed unit)
                progress.log(traceback.format_exc())
                outcome = f"{type(error).__name__}: {error}"
        progress.log(f"ablate: {outcome}")
        if outcome != "done":
            result.failed["ablate"] = outcome
    result.seconds = time.time() - started
    history.append(
        {
            **run_entry,
            "status": "finished",
            "seconds": result.seconds,
            "ran": len(result.ran),
            "reused": len(result.reused),
            "failed": len(result.failed),
        }
    )
    run_info = {
        "data": data_record(config),
        "history": history,
        "command": shlex.join(cmd),
        "config_source": config.source,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": result.seconds,
        "units": len(plan),
        "ran": len(result.ran),
        "reused": len(result.reused),
        "failed": result.failed,
        "status": {name: state for name, state in status.items() if name not in driver.extra},
        "shared": {name: status.get(name, "unused") for name in sorted(driver.extra)},  # c = 0 baselines
    }
    write_atomic(out / "run.json", dump_json(run_info))
    assemble(out, config.as_dict(), plan_units=[u.describe() for u in plan], status=status)
    if render:
        from steerlab.report import render_report

        result.report = render_report(out)
    summary = (
        f"bench: {len(result.ran)} units run, {len(result.reused)} reused, {len(result.failed)} failed "
        f"in {format_seconds(result.seconds)}; results in {out}"
    )
    progress.close(summary)
    return result
