"""Long jobs as processes of their own: started by the terminal UI, they outlive it and the SSH session.

A job is one `appliance` command run by `python -m appliance.jobs FILE` in a new session (its own process group,
no terminal), with its output in `workspace/jobs/ID.log`, its typed progress events as JSON lines in
`ID.events.jsonl`, and its exit status in `ID.rc` when it ends. Whoever opens the workspace later (a reconnected
UI) finds the job there: running (its process alive), done, failed, cancelled (SIGINT: the command's run is left
resumable, as with Ctrl-C) or killed (no exit status and no process). `resume()` starts the command again; the
commands that resume by run id (eval answers, sdg generate, train) are given the run this job left unfinished, the
others (ingest, ladder) resume by being run again.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from appliance.cliutil import EXIT_INTERRUPTED
from appliance.errors import UsageError
from appliance.progress import ProgressEvent, Sink
from appliance.workspace import Workspace

PROGRESS_ENV = "APPLIANCE_PROGRESS_FILE"   # where a command writes its progress events (set for jobs)
# Commands that resume a killed run by id: (argv prefix) -> (run kind, the run's start event).
RESUME_BY_ID = {("eval", "answers"): ("eval-answers", "eval_answers_start"), ("train",): ("train", "train_start"),
                ("sdg", "generate"): ("sdg-generate", "sdg_start")}
STATES = ("running", "done", "failed", "cancelled", "killed")


def recording_sink(path: Path, then: Sink | None = None) -> Sink:
    """A sink that appends each event as a JSON line to `path` (flushed: a reader sees it at once), then passes it
    on to `then`."""
    f: IO[str] = path.open("a", encoding="utf-8")

    def sink(e: ProgressEvent) -> None:
        f.write(json.dumps(asdict(e)) + "\n")
        f.flush()
        if then is not None:
            then(e)
    return sink


@dataclass(frozen=True)
class Job:
    """A job as recorded in the workspace's jobs folder."""

    job_id: str
    argv: list[str]
    title: str
    started_at: str
    pid: int
    folder: Path
    resumes: str | None = None      # the job this one continues
    workspace: str = ""             # its workspace, absolute

    @property
    def command(self) -> list[str]:
        """The command's words and options without the `--set` options given before it."""
        words, rest = [], iter(self.argv)
        for a in rest:
            if a == "--set":
                next(rest, None)
            else:
                words.append(a)
        return words

    def _file(self, suffix: str) -> Path:
        return self.folder / f"{self.job_id}{suffix}"

    spec_path = property(lambda self: self._file(".json"))
    log_path = property(lambda self: self._file(".log"))
    events_path = property(lambda self: self._file(".events.jsonl"))
    rc_path = property(lambda self: self._file(".rc"))

    @property
    def rc(self) -> int | None:
        try:
            return int(self.rc_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def state(self) -> str:
        rc = self.rc
        if rc is not None:
            return "done" if rc == 0 else "cancelled" if rc == EXIT_INTERRUPTED else "failed"
        return "running" if _is_job_process(self.pid, self.spec_path) else "killed"

    @property
    def resumable(self) -> bool:
        return self.state in ("cancelled", "killed")

    def events(self) -> list[ProgressEvent]:
        if not self.events_path.is_file():
            return []
        out = []
        for line in self.events_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(ProgressEvent(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue        # a line cut by a kill
        return out

    def stages(self) -> list[ProgressEvent]:
        """The latest step (or start) of every stage, in the order the stages began."""
        latest: dict[str, ProgressEvent] = {}
        for e in self.events():
            if e.kind != "note":
                latest[e.stage] = e
        return list(latest.values())

    def notes(self, n: int = 20) -> list[str]:
        return [e.message for e in self.events() if e.kind == "note"][-n:]

    def log_tail(self, n: int = 40) -> list[str]:
        if not self.log_path.is_file():
            return []
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]


def _is_job_process(pid: int, spec: Path) -> bool:
    """The pid is alive and is this job's runner (not a later process that reused the number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"appliance.jobs" in cmdline and str(spec).encode() in cmdline and _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def jobs_dir(ws: Workspace) -> Path:
    return ws.root / "jobs"


def _write(path: Path, text: str) -> None:
    """Write a file whole (a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def start(ws: Workspace, argv: list[str], title: str = "", resumes: str | None = None) -> Job:
    """Start `appliance ARGV` (in this workspace) as a job of its own and return it at once. It runs in this
    process's directory (paths in ARGV mean what they mean here); the workspace is passed as an absolute path."""
    if not argv:
        raise UsageError("a job needs a command")
    folder = jobs_dir(ws).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    spec = folder / f"{job_id}.json"
    record = {"job_id": job_id, "argv": argv, "title": title or " ".join(argv), "resumes": resumes,
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "pid": 0,
              "workspace": str(ws.root.resolve()), "cwd": os.getcwd()}
    _write(spec, json.dumps(record))
    with (folder / f"{job_id}.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.jobs", str(spec)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=record["cwd"])
    record["pid"] = proc.pid
    _write(spec, json.dumps(record))
    return _load(spec)


def _load(spec: Path) -> Job:
    r = json.loads(spec.read_text())
    return Job(r["job_id"], r["argv"], r["title"], r["started_at"], int(r["pid"]), spec.parent, r.get("resumes"),
               r.get("workspace") or str(spec.parent.parent))


def list_jobs(ws: Workspace) -> list[Job]:
    """Every job of the workspace, newest first."""
    folder = jobs_dir(ws)
    if not folder.is_dir():
        return []
    return sorted((_load(p) for p in folder.glob("*.json")), key=lambda j: j.job_id, reverse=True)


def latest(ws: Workspace, command: str, state: str | None = None) -> Job | None:
    """The newest job of an `appliance COMMAND` (in `state`, if given)."""
    return next((j for j in list_jobs(ws) if j.command[:1] == [command] and state in (None, j.state)), None)


def get(ws: Workspace, job_id: str) -> Job:
    hits = [j for j in list_jobs(ws) if j.job_id.startswith(job_id)]
    if len(hits) != 1:
        raise UsageError(f"job {job_id!r}: " + ("no such job" if not hits else "ambiguous prefix"))
    return hits[0]


def cancel(job: Job) -> None:
    """Ask a running job to stop as Ctrl-C would (SIGINT to its process group): its run stays resumable."""
    if job.state != "running":
        raise UsageError(f"job {job.job_id} is {job.state}, not running")
    os.killpg(job.pid, signal.SIGINT)


def resume(ws: Workspace, job: Job) -> Job:
    """Start a cancelled or killed job's command again, continuing the run it left unfinished."""
    if not job.resumable:
        raise UsageError(f"job {job.job_id} is {job.state}; only a cancelled or killed job can be resumed")
    argv = list(job.argv)
    for prefix, (kind, start_kind) in RESUME_BY_ID.items():
        if tuple(job.command[: len(prefix)]) == prefix and "--resume" not in argv:
            run_id = _unfinished_run(ws, job.pid, kind, start_kind)
            if run_id is not None:
                argv += ["--resume", run_id]
    return start(ws, argv, f"resume: {job.title}", resumes=job.job_id)


def _unfinished_run(ws: Workspace, pid: int, kind: str, start_kind: str) -> str | None:
    """The unclosed run of `kind` that process `pid` started (None: it started none, e.g. killed before)."""
    from appliance.audit import AuditStore

    with AuditStore(ws.audit_path) as store:
        for info in reversed(store.runs((kind,))):       # the newest first
            if info.status is None and any(e.get("pid") == pid for e in store.events(info.run_id, start_kind)):
                return info.run_id
    return None


def run_job(spec: Path) -> int:
    """The job process: run the command in this process with its events recorded, then write the exit status.
    The audit store records the command as `appliance ARGV`, as if typed."""
    job = _load(spec)
    os.environ[PROGRESS_ENV] = str(job.events_path)
    sys.argv = ["appliance", *job.argv]
    rc = 1
    try:
        from appliance.cli import main

        rc = main(["--workspace", job.workspace, *job.argv])
    except SystemExit as e:          # argparse refusing the command line
        rc = e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:        # a cancel that came before the command could catch it
        rc = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # a second cancel must not cost the exit status
        _write(job.rc_path, f"{rc}\n")
    return rc


def describe(job: Job) -> dict[str, Any]:
    """A job as a row (the CLI's --json and the UI's table)."""
    last = job.stages()[-1:] or [None]
    e = last[0]
    return {"job_id": job.job_id, "title": job.title, "state": job.state, "rc": job.rc, "pid": job.pid,
            "started_at": job.started_at, "stage": e.stage if e else "", "done": e.done if e else None,
            "total": e.total if e else None, "resumes": job.resumes}
