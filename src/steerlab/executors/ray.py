"""The `ray` executor: a bench plan's units on a Ray cluster, independent units in parallel.

Each resource profile (``num_cpus``/``num_gpus``/``memory`` per unit kind, overridable in
``[executor_options.resources]``; a shared c = 0 baseline takes the eval kind's unless given its own)
gets a pool of actors; an actor loads the model once and serves many units (one actor per model and
device, not one load per unit). A unit is sent to an idle actor as soon
as every unit it reads is done; its input units' files travel with it and its own files come back as
bytes, so the driver alone writes OUT (through the same atomic store as `local`) and OUT may live on
storage the workers never see. A worker that dies mid-unit (killed, out of memory) is replaced and the
unit retried up to ``max_retries`` times; a unit that raises fails once and only its dependents are
blocked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerlab.bench.baseline import BASELINE_KIND
from steerlab.bench.config import BenchConfig
from steerlab.bench.plan import KINDS, Unit
from steerlab.executors.base import (
    EXECUTORS,
    ExecutorSpec,
    UnitDriver,
    blockers,
    pack_dir,
    resolved,
    unpack_dir,
)

__all__ = ["RayExecutor", "RayOptions", "default_resources"]

log = logging.getLogger("steerlab.executors.ray")

RESOURCE_KEYS = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


@dataclass
class RayOptions:
    """``address``: None starts a local cluster (or uses the one this process already joined), "auto" or
    HOST:PORT joins one. ``workers``: at most this many actors per resource profile (default and ceiling: as
    many as the cluster fits).
    ``threads``: torch threads per actor (default: its ``num_cpus``, so 1). ``resources``: per unit kind,
    e.g. ``{"extract": {"num_gpus": 2}}``, merged over the defaults."""

    address: str | None = None
    workers: int | None = None
    max_retries: int = 2
    threads: int | None = None
    resources: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for kind, request in self.resources.items():
            if kind not in (*KINDS, BASELINE_KIND):
                kinds = ", ".join((*KINDS, BASELINE_KIND))
                raise ValueError(f"resources.{kind}: unknown unit kind; kinds: {kinds}")
            for key in request:
                if key not in RESOURCE_KEYS:
                    raise ValueError(f"resources.{kind}.{key}: expected one of {', '.join(RESOURCE_KEYS)}")


def default_resources(config: BenchConfig, cluster: dict[str, float]) -> dict[str, float]:
    """One CPU per unit; one GPU too when the cluster has GPUs and the config does not ask for CPU."""
    gpu = 1.0 if cluster.get("GPU", 0) > 0 and (config.device or "auto") != "cpu" else 0.0
    return {"num_cpus": 1.0, "num_gpus": gpu}


def _profile(request: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in request.items() if v))


class _UnitActor:
    """Runs in a Ray worker process: one model load, then any number of units."""

    def __init__(self, config: BenchConfig, model: Any, tokenizer: Any, threads: int) -> None:
        from steerlab.threads import configure_environment

        configure_environment(threads)
        import torch

        torch.set_num_threads(threads)
        from steerlab.bench.units import UnitWorker

        self.notes: list[str] = []
        self.worker = UnitWorker(config, model, tokenizer, note=self.notes.append)

    def ready(self) -> int:
        return os.getpid()

    def compute(self, unit: Unit, inputs: dict[str, dict[str, bytes]]) -> tuple[dict[str, bytes], list[str]]:
        self.notes.clear()
        loaded = time.perf_counter()
        self.worker.model()
        started = time.perf_counter()
        if started - loaded > 0.5:
            self.notes.append(f"ray worker pid {os.getpid()} loaded the model in {started - loaded:.1f}s")
        with tempfile.TemporaryDirectory(prefix="steerlab-unit-") as scratch:
            root = Path(scratch)
            dirs = {}
            for index, (name, files) in enumerate(inputs.items()):
                dirs[name] = root / f"in{index}"
                unpack_dir(files, dirs[name])
            out = root / "out"
            out.mkdir()
            self.worker.compute(unit, dirs, out)
            self.notes.append(
                f"computed {unit.name} in {time.perf_counter() - started:.3f}s on pid {os.getpid()}"
            )
            return pack_dir(out), list(self.notes)


@dataclass
class _Actor:
    handle: Any
    profile: tuple[tuple[str, float], ...]
    index: int
    pid: int | None = None


class RayExecutor:
    """Schedules the plan's dependency graph onto pools of model-holding Ray actors."""

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()

    # ---- cluster
    def _connect(self) -> bool:
        """Join or start a cluster; True when this call started it (and so shuts it down)."""
        try:
            import ray
        except ImportError as error:
            raise RuntimeError(
                "the ray executor needs Ray: pip install 'steerlab[ray]' (or run with --executor local)"
            ) from error
        if ray.is_initialized():
            return False
        if self.options.address:
            ray.init(address=self.options.address, log_to_driver=False)
        else:
            from steerlab.threads import available_cores

            ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False)
        return True

    def run(self, units: Sequence[Unit], driver: UnitDriver) -> None:
        import ray

        started_cluster = self._connect()
        try:
            _Scheduler(self.options, driver, ray).run(list(units))
        finally:
            if started_cluster:
                ray.shutdown()


class _Scheduler:
    """One run's dispatch loop: ready units to idle actors, results back to the driver."""

    def __init__(self, options: RayOptions, driver: UnitDriver, ray: Any) -> None:
        self.options, self.driver, self.ray = options, driver, ray
        self.cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        self.base = base = default_resources(driver.config, self.cluster)
        self.requests = {kind: {**base, **options.resources.get(kind, {})} for kind in KINDS}
        # a shared c = 0 baseline is eval work: it runs on the eval actors unless given resources of its own
        self.requests[BASELINE_KIND] = {**self.requests["eval"], **options.resources.get(BASELINE_KIND, {})}
        injected = driver.model is not None  # a model handed to run_bench (tests) travels to every actor
        self.model_ref = ray.put(driver.model) if injected else None
        self.tokenizer_ref = ray.put(driver.tokenizer) if injected else None
        self.actor_cls = ray.remote(max_restarts=0, max_task_retries=0)(_UnitActor)
        self.idle: dict[tuple[tuple[str, float], ...], list[_Actor]] = {}
        self.count: dict[tuple[tuple[str, float], ...], int] = {}
        self.made = 0
        self.attempts: dict[str, int] = {}
        self.readiness: dict[Any, _Actor] = {}
        self.sent: dict[str, float] = {}  # unit name -> when it was dispatched (for the overhead figure)

    def limit(self, profile: tuple[tuple[str, float], ...]) -> int:
        """Actors of one profile at most: what the cluster holds, capped by ``workers``.

        ``workers`` is a cap, never a count to force: an actor the cluster cannot place would hold the unit
        sent to it forever (two one-GPU workers on a one-GPU machine deadlocked before this).
        """
        fits = [
            math.floor(self.cluster.get(RESOURCE_KEYS[key], 0.0) / amount)
            for key, amount in profile
            if amount > 0
        ]
        room = max(1, min(fits)) if fits else 1
        return room if self.options.workers is None else min(self.options.workers, room)

    def _new_actor(self, profile: tuple[tuple[str, float], ...]) -> _Actor:
        request = dict(profile)
        threads = self.options.threads or max(1, int(request.get("num_cpus", 1)))
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
        handle = self.actor_cls.options(
            num_cpus=request.get("num_cpus", 0),
            num_gpus=request.get("num_gpus", 0),
            memory=request.get("memory") or None,
            runtime_env={"env_vars": env},
        ).remote(self.driver.config, self.model_ref, self.tokenizer_ref, threads)
        actor = _Actor(handle, profile, self.made)
        self.made += 1
        self.count[profile] = self.count.get(profile, 0) + 1
        self.readiness[handle.ready.remote()] = actor
        return actor

    def _acquire(self, profile: tuple[tuple[str, float], ...]) -> _Actor | None:
        pool = self.idle.setdefault(profile, [])
        if pool:
            return pool.pop()
        if self.count.get(profile, 0) < self.limit(profile):
            return self._new_actor(profile)
        return None

    def _discard(self, actor: _Actor) -> None:
        self.count[actor.profile] -= 1
        with contextlib.suppress(Exception):  # already dead
            self.ray.kill(actor.handle)

    def _release_unused(self, pending: list[Unit], running: dict[Any, tuple[Unit, _Actor]]) -> None:
        """Free idle actors the plan cannot use now, so actors of another profile can be placed.

        Idle actors of a profile no remaining unit needs always go. With several profiles, idle actors with
        no ready unit also go while an actor of another profile waits for room: otherwise a cluster full of
        idle extract actors would never place the calibrate actor their evals wait for.
        """
        status = self.driver.status
        needed = {self._profile_of(u) for u in pending} | {a.profile for _u, a in running.values()}
        ready = {self._profile_of(u) for u in pending if all(status.get(d) == "done" for d in u.depends)}
        unplaced = {actor.profile for actor in self.readiness.values()}
        for profile, pool in self.idle.items():
            if profile not in needed or (profile not in ready and unplaced - {profile}):
                while pool:
                    self._discard(pool.pop())

    def _profile_of(self, unit: Unit) -> tuple[tuple[str, float], ...]:
        return _profile(self.requests.get(unit.kind, self.base))

    def run(self, pending: list[Unit]) -> None:
        driver = self.driver
        running: dict[Any, tuple[Unit, _Actor]] = {}
        fitting = max(self.limit(_profile(r)) for r in self.requests.values())
        driver.set_parallelism(min(fitting, max(1, len(pending))))
        try:
            self._loop(pending, running)
        finally:  # free the cluster for the next run at once, instead of when the handles are collected
            for pool in self.idle.values():
                while pool:
                    self._discard(pool.pop())
            for _unit, actor in running.values():
                self._discard(actor)

    def _loop(self, pending: list[Unit], running: dict[Any, tuple[Unit, _Actor]]) -> None:
        ray, driver = self.ray, self.driver
        while pending or running:
            self._block_dependents(pending)
            for unit in [u for u in pending if all(driver.status.get(d) == "done" for d in u.depends)]:
                actor = self._acquire(self._profile_of(unit))
                if actor is None:
                    continue
                inputs = {name: pack_dir(path) for name, path in driver.inputs(unit).items()}
                pending.remove(unit)
                driver.begin(unit)
                self.sent[unit.name] = time.perf_counter()
                running[actor.handle.compute.remote(unit, inputs)] = (unit, actor)
            self._release_unused(pending, running)
            if not running:
                for unit in pending:  # nothing can run and nothing is running: report, never hang
                    driver.fail(
                        unit, "no worker could be placed for this unit (check [executor_options] resources)"
                    )
                return
            waiting = list(running) + list(self.readiness)
            done, _ = ray.wait(waiting, num_returns=1, timeout=5.0)
            for ref in done:
                if ref in self.readiness:
                    self._ready(ref)
                else:
                    self._collect(ref, *running.pop(ref), pending)

    def _block_dependents(self, pending: list[Unit]) -> None:
        """Block every pending unit downstream of a failure (to a fixed point: blocks cascade)."""
        changed = True
        while changed:
            changed = False
            for unit in [
                u for u in pending if resolved(u, self.driver.status) and blockers(u, self.driver.status)
            ]:
                pending.remove(unit)
                self.driver.block(unit, blockers(unit, self.driver.status))
                changed = True

    def _ready(self, ref: Any) -> None:
        actor = self.readiness.pop(ref)
        try:
            actor.pid = self.ray.get(ref)
            self.driver.note(f"ray worker {actor.index} pid {actor.pid} ready ({dict(actor.profile)})")
        except Exception as error:  # its units will report the death
            self.driver.note(f"ray worker {actor.index} did not start: {type(error).__name__}")

    def _collect(self, ref: Any, unit: Unit, actor: _Actor, pending: list[Unit]) -> None:
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        driver = self.driver
        try:
            files, notes = self.ray.get(ref)
        except (RayActorError, WorkerCrashedError) as error:
            self._discard(actor)
            tries = self.attempts[unit.name] = self.attempts.get(unit.name, 0) + 1
            reason = f"worker {actor.index} (pid {actor.pid}) died: {type(error).__name__}"
            if tries <= self.options.max_retries:
                driver.requeue(unit, f"{reason}; try {tries + 1} of {self.options.max_retries + 1}")
                pending.insert(0, unit)
            else:
                driver.fail(unit, f"{reason}, {tries} times (max_retries = {self.options.max_retries})")
            return
        except RayTaskError as error:
            self.idle.setdefault(actor.profile, []).append(actor)
            cause = error.cause if isinstance(error.cause, BaseException) else error
            detail = "".join(traceback.format_exception(cause)) if cause is not error else str(error)
            driver.fail(unit, f"{type(cause).__name__}: {cause}", detail)
            return
        self.idle.setdefault(actor.profile, []).append(actor)
        for message in notes:
            driver.note(message)
        driver.publish(unit, lambda tmp: unpack_dir(files, tmp))
        elapsed = time.perf_counter() - self.sent.pop(unit.name, time.perf_counter())
        driver.note(f"published {unit.name} {elapsed:.3f}s after dispatch")


EXECUTORS.add(
    "ray",
    ExecutorSpec(
        "ray",
        RayOptions,
        RayExecutor,
        "units as Ray actor tasks, independent units in parallel (steerlab[ray])",
    ),
)
