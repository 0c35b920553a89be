"""What every package's CLI commands share: output (human or --json), the workspace, the recorded command line,
access groups, and progress rendering (rich progress bars on a terminal, plain lines elsewhere, nothing with
--json)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from appliance.progress import Progress, ProgressEvent
from appliance.workspace import Workspace, open_workspace, this_command

ADAPTER_HELP = "an adapter trained here (NAME@0.5 applies it at half its trained strength)"

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Register = Callable[["argparse._SubParsersAction", argparse.ArgumentParser], None]


def emit(args: argparse.Namespace, payload: Any, human: Callable[[], None]) -> None:
    """`payload` as JSON on stdout with --json, else whatever `human` prints."""
    if args.json:
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default))
    else:
        human()


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def workspace(args: argparse.Namespace, create: bool = True) -> Workspace:
    """The workspace the command works in (made with defaults on first use, which is said on stderr)."""
    ws = open_workspace(Path(args.workspace) if args.workspace else None, args.set, create=create)
    if ws.created and not args.json:
        print(f"appliance: created workspace {ws.root} with default settings", file=sys.stderr)
    return ws


def command() -> str:
    """This invocation as the audit store records it."""
    return this_command()


def groups(value: str | None) -> list[str]:
    """A comma-separated --groups value as a list."""
    return [g.strip() for g in (value or "").split(",") if g.strip()]


def caller_groups(value: str | None, ws: Workspace) -> list[str]:
    """The access groups a reading command asks for (--groups), refused if the OS user does not hold one of them."""
    from appliance.access import entitlement

    return entitlement(ws.config).check(groups(value))


@contextmanager
def progress(args: argparse.Namespace) -> Iterator[Progress]:
    """The Progress a command hands its job: bars on a terminal, lines on a pipe, nothing with --json; a job
    started by the terminal UI (appliance/jobs.py) also records every event to its events file."""
    from appliance.jobs import PROGRESS_ENV, recording_sink

    recorded = os.environ.get(PROGRESS_ENV)
    if recorded:
        yield Progress(recording_sink(Path(recorded), None if args.json else _line))
    elif args.json:
        yield Progress()
    elif sys.stderr.isatty():
        with _Bars() as bars:
            yield Progress(bars)
    else:
        yield Progress(_line)


def _line(e: ProgressEvent) -> None:
    if e.kind != "start":
        print(e.line(), file=sys.stderr, flush=True)


class _Bars:
    """rich progress bars on stderr, one per stage; notes are printed above them."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         TimeRemainingColumn(), TextColumn("{task.fields[last]}", style="dim"),
                         console=Console(stderr=True), transient=False)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)

    def __call__(self, e: ProgressEvent) -> None:
        if e.kind == "note":
            self.bars.console.print(e.message, markup=False, highlight=False)
            return
        if e.stage not in self.tasks:
            self.tasks[e.stage] = self.bars.add_task(e.stage, total=e.total, completed=e.done, last="")
        self.bars.update(self.tasks[e.stage], completed=e.done, total=e.total, last=e.message[:60])
