"""One progress channel for the whole library: code reports `ProgressEvent`s, the caller decides what to show.

Library code never prints. Long work (contrast capture, adapter training, melbo's sweep, model conversion)
calls `report(...)`; the events go to the callback installed with `progress_to` (the CLI prints a line to
stderr, the bench routes them into its own display and log) and otherwise to the ``steerlab.progress`` logger
at DEBUG level. Plain messages use `logging.getLogger("steerlab.<module>")`.

    with progress_to(lambda event: print(event.line(), file=sys.stderr)):
        sl.extract(model, tok, "honesty", "ws-lora")
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass

from steerlab.scoped import scoped

__all__ = ["ProgressCallback", "ProgressEvent", "current_callback", "progress_to", "report"]

_log = logging.getLogger("steerlab.progress")


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` ``unit`` finished in ``task`` (total None when unknown); ``message`` is free text."""

    task: str
    done: int = 0
    total: int | None = None
    unit: str = ""
    message: str = ""

    def line(self) -> str:
        """One human-readable line, e.g. ``ws-lora: training honest adapter: 40/120 steps (loss 1.23)``."""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        text = f"{self.task}: {count} {self.unit}".rstrip() if (self.total or self.done) else self.task
        return (
            f"{text} ({self.message})"
            if self.message and (self.total or self.done)
            else (f"{text}: {self.message}" if self.message else text)
        )


ProgressCallback = Callable[[ProgressEvent], None]

_callback: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar(
    "steerlab_progress", default=None
)


def current_callback() -> ProgressCallback | None:
    return _callback.get()


def progress_to(
    callback: ProgressCallback | None,
) -> contextlib.AbstractContextManager[ProgressCallback | None]:
    """Send the progress events of the code run inside to ``callback`` (None: to the debug log only)."""
    return scoped(_callback, callback)


def report(task: str, done: int = 0, total: int | None = None, unit: str = "", message: str = "") -> None:
    """Report progress of ``task`` to the installed callback (or the debug log)."""
    event = ProgressEvent(task, done, total, unit, message)
    callback = _callback.get()
    if callback is None:
        _log.debug(event.line())
    else:
        callback(event)


def throttled(task: str, total: int, unit: str, every: float = 0.1) -> Callable[[int], None]:
    """A counter callback ``advance(n)`` that reports ``task`` about every ``every`` of ``total`` (and at the end)."""
    done, next_report = 0, 0.0

    def advance(n: int) -> None:
        nonlocal done, next_report
        done += n
        if done >= next_report or done >= total:
            report(task, done, total, unit)
            next_report = done + max(1.0, every * total)

    return advance
