"""Resuming a killed or interrupted job in the same audit run: which run, whether it may be resumed, and what it
had finished. Shared by every resumable job (eval answers, sdg generate, and later rungs)."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from appliance.audit import AuditStore, RunInfo
from appliance.config import Config, section_sha256
from appliance.errors import UsageError
from appliance.workspace import Workspace, this_command

PROCESS_EVENTS = ("run_resumed", "run_interrupted")


@dataclass(frozen=True)
class Resumable:
    """A run that may go on: its header, what it was asked to do (its start event) and its events of the kinds
    asked for (e.g. the units of work it finished)."""

    info: RunInfo
    start: dict[str, Any]
    done: list[dict[str, Any]]

    @property
    def run_id(self) -> str:
        return self.info.run_id


def config_differences(started: dict[str, Any], now: Config, sections: tuple[str, ...]) -> list[str]:
    """The `section.key`s whose value differs between a run's recorded configuration and `now`, over `sections`;
    keys that exist on one side only (added or dropped by another appliance version) are not differences."""
    current = now.to_dict()
    diffs = []
    for s in sections:
        old, new = started.get(s, {}), current.get(s, {})
        if section_sha256(old) == section_sha256(new):
            continue
        diffs += [f"{s}.{k}" for k in sorted(set(old) & set(new)) if old[k] != new[k]]
    return diffs


def find_resumable(ws: Workspace, prefix: str, kind: str, start_kind: str, sections: tuple[str, ...],
                   done_kind: str) -> Resumable:
    """The unclosed run of `kind` named by `prefix`, refused (with the reason) if it ended, is still running on
    this host (its last process alive and not interrupted), or a setting it reads (`sections`) changed."""
    with AuditStore(ws.audit_path) as store:
        info = store.find_run(prefix, (kind,))
        process = store.events(info.run_id, start_kind, *PROCESS_EVENTS)
        done = store.events(info.run_id, done_kind)
    if info.status is not None:
        raise UsageError(f"run {info.run_id} finished (or failed and was closed); only a killed run can be resumed")
    if still_running(process):
        raise UsageError(f"run {info.run_id} is still running (pid {process[-1]['pid']})")
    changed = config_differences(info.config, ws.config, sections)
    if changed:
        raise UsageError(f"run {info.run_id} was made with other settings ({', '.join(changed)}); resume it with "
                         f"the same config.toml and --set options")
    return Resumable(info, process[0], done)


def still_running(process: list[dict[str, Any]]) -> bool:
    """Whether the process that worked on a run last (its start / run_resumed / run_interrupted events, oldest
    first) is alive on this host and was not interrupted."""
    if not process:
        return False
    last = process[-1]
    return last["kind"] != "run_interrupted" and last.get("host") == socket.gethostname() and _alive(last.get("pid"))


def stopped_runs(ws: Workspace, kind: str, start_kind: str) -> list[str]:
    """The runs of `kind` left unclosed by a process that is gone (killed or interrupted)."""
    with AuditStore(ws.audit_path) as store:
        return [info.run_id for info in store.runs((kind,)) if info.status is None
                and not still_running(store.events(info.run_id, start_kind, *PROCESS_EVENTS))]


def close_superseded(ws: Workspace, run_ids: list[str], why: str) -> None:
    """Close stopped runs of a job that resumes by being run again (ingest) once a later run has gone on from what
    they wrote: they end as `superseded`, so `audit verify` stays clean."""
    with AuditStore(ws.audit_path) as store:
        for run_id in run_ids:
            store.reopen_run(run_id).close("superseded", reason=why)


def process_event(command: str, **more: Any) -> dict[str, Any]:
    """Who works on a run now (recorded in its start or run_resumed event): command, pid, host."""
    return {"command": command or this_command(), "pid": os.getpid(), "host": socket.gethostname(), **more}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
