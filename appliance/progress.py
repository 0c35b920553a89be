"""Progress of long jobs as typed events, and the cancel switch they check between units of work.

A job (ingest, eval, and every later long job) reports through a `Progress`: `advance()` for a unit done (a file,
a question), `note()` for a line worth showing (an estimate, a warning, how to resume). Whoever started the job
decides what the events become: the CLI draws progress bars on a terminal and plain lines elsewhere (nothing
with --json); the terminal UI subscribes to the same events. `cancel()` from another thread (a UI's worker) makes
the job raise `Cancelled` at its next check, which leaves its run resumable exactly like Ctrl-C.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import Cancelled

__all__ = ["Cancelled", "Progress", "ProgressEvent", "Sink"]


@dataclass(frozen=True)
class ProgressEvent:
    """One report from a job: `done` of `total` `unit`s of `stage` (total None: unknown), with a message. Kinds:
    "start" (a stage begins, `done` already finished), "step" (units done) and "note" (a line to show)."""

    stage: str
    done: int
    total: int | None
    unit: str
    message: str = ""
    kind: str = "step"                 # start | step | note
    elapsed_s: float = 0.0             # since the job's first event
    eta_s: float | None = None         # steps only: time left at the pace so far

    def line(self) -> str:
        """The event as one line of text (what a terminal without bars shows)."""
        if self.kind == "note":
            return self.message
        count = f"[{self.done}/{self.total}]" if self.total is not None else f"[{self.done}]"
        left = f", about {self.eta_s:.0f} s left" if self.eta_s is not None else ""
        return f"{count} {self.message}  ({self.elapsed_s:.0f} s{left})".replace("  ()", "")


Sink = Callable[[ProgressEvent], None]


class Progress:
    """What a long job reports through: typed events to a sink (or nowhere), and a cancel flag."""

    def __init__(self, sink: Sink | None = None, cancel: threading.Event | None = None) -> None:
        self.sink = sink
        self._cancel = cancel or threading.Event()
        self._t0: float | None = None
        self._pace: dict[str, tuple[float, int]] = {}   # stage -> (time and done count when the stage started)

    def _elapsed(self) -> float:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _emit(self, event: ProgressEvent) -> None:
        if self.sink is not None:
            self.sink(event)

    def start(self, stage: str, total: int | None, unit: str, done: int = 0, message: str = "") -> None:
        """A stage begins (`done` units already finished, e.g. by an earlier process of a resumed run)."""
        elapsed = self._elapsed()
        self._pace[stage] = (elapsed, done)
        self._emit(ProgressEvent(stage, done, total, unit, message, "start", elapsed, None))

    def advance(self, stage: str, done: int, total: int | None, unit: str, message: str = "") -> None:
        """`done` units of `stage` are finished; checks for cancellation first."""
        self.check()
        elapsed = self._elapsed()
        t_start, done_start = self._pace.setdefault(stage, (0.0, 0))
        eta = None
        if total is not None and done > done_start:
            eta = (elapsed - t_start) / (done - done_start) * (total - done)
        self._emit(ProgressEvent(stage, done, total, unit, message, "step", elapsed, eta))

    def note(self, message: str, stage: str = "") -> None:
        """A line worth showing (an estimate, a warning, how to resume)."""
        self._emit(ProgressEvent(stage, 0, None, "", message, "note", self._elapsed()))

    def cancel(self) -> None:
        """Ask the job to stop at its next check (safe from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise Cancelled if cancel() was called; jobs call it between units of work."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")
