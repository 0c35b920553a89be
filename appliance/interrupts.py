"""Ctrl-C (SIGINT, also a job's cancel) as a resumable stop, however the library under it reports it.

Python raises KeyboardInterrupt where the signal lands, but native code may turn it into an error of its own:
DuckDB interrupts the query in progress and raises `RuntimeError("Query interrupted")`. The CLI installs `handler`,
which remembers that an interrupt came before raising KeyboardInterrupt as Python's own handler does; an exception
that escapes a run after that is taken as the interrupt (the run is left resumable), not as a failure.
"""
from __future__ import annotations

import signal
from types import FrameType

from appliance.errors import Cancelled

_received = False


def handler(signum: int, frame: FrameType | None) -> None:
    """Python's default SIGINT behaviour, remembered."""
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    """Use `handler` for SIGINT in this process from now on (call it from the main thread)."""
    global _received
    _received = False
    signal.signal(signal.SIGINT, handler)


def is_interrupt(e: BaseException) -> bool:
    """Whether `e` is, or came of, a Ctrl-C or a cancel."""
    return isinstance(e, (KeyboardInterrupt, Cancelled)) or _received
