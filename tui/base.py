"""What every pane shares: its data is loaded off the UI thread (nothing freezes the screen) and shown when ready;
jobs are started with the UI's own --set options; tables are refilled without losing the highlighted row."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable

from appliance import jobs
from appliance.workspace import Workspace

# One worker at a time touches the store: DuckDB refuses a second thread attaching the same file while the first
# is attaching it, and these reads take milliseconds.
STORE = threading.Lock()


class Pane(Vertical):
    """A tab's body. `load()` runs in a worker thread and returns plain data; `show(data)` puts it on screen."""

    refresh_seconds: float | None = None      # reload this often while visible (panes that follow jobs)
    primary: str | None = None                # the widget a tab key focuses (default: the first table)

    @property
    def ws(self) -> Workspace:
        return self.app.ws      # type: ignore[attr-defined]

    def on_mount(self) -> None:
        if self.refresh_seconds:
            self.set_interval(self.refresh_seconds, self._tick)

    def on_show(self) -> None:
        self.reload()

    def _tick(self) -> None:
        if self.is_on_screen:
            self.reload()

    def reload(self) -> None:
        self.run_worker(self._load, thread=True, exclusive=True, group=f"load-{self.id}")

    def _load(self) -> None:
        self._guarded(self.load, self.show, store=True)

    def load(self) -> Any:
        return None

    def show(self, data: Any) -> None:
        pass

    def _guarded(self, work: Callable[[], Any], done: Callable[[Any], None] | None, store: bool) -> None:
        """In a worker thread: `work()`, then `done(result)` on the UI thread. Any error is shown and the UI goes on
        (a UI that dies with a job's half-written file or a store busy for a minute is worse than a message)."""
        try:
            if store:
                with STORE:
                    result = work()
            else:
                result = work()
        except Exception as e:  # noqa: BLE001 - shown to the user, the screen stays up
            self.app.call_from_thread(self.app.notify, f"{type(e).__name__}: {e}", severity="error", markup=False)
            return
        if done is not None:
            self.app.call_from_thread(done, result)

    def background(self, work: Callable[[], Any], done: Callable[[Any], None] | None = None,
                   store: bool = True) -> None:
        """Run `work()` off the UI thread (holding the store lock unless `store` is False), then `done(result)`."""
        self.run_worker(lambda: self._guarded(work, done, store), thread=True, group=f"work-{self.id}")

    def start_job(self, argv: list[str], said: str = "") -> None:
        """Start `appliance ARGV` as a job (with the UI's own --set options) and say so."""
        full = [a for kv in self.app.overrides for a in ("--set", kv)] + argv  # type: ignore[attr-defined]
        self.background(lambda: jobs.start(self.ws, full, " ".join(argv)),
                        lambda j: self.app.notify(f"job {j.job_id} started: {j.title}. {said}", markup=False),
                        store=False)


def selected_key(table: DataTable) -> str | None:
    """The key of the highlighted row (None: empty table or rows without keys)."""
    if table.row_count == 0:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - a cursor outside the rows
        return None


def fill(table: DataTable, columns: list[str], rows: list[list[Any]], keys: list[str] | None = None) -> None:
    """Replace a table's content, keeping the highlighted row (by key where rows have keys, else by position).
    Cells are plain text: brackets in file names, questions or SQL results are shown, never read as markup."""
    key, row = selected_key(table) if keys else None, table.cursor_row
    table.clear(columns=True)
    table.add_columns(*columns)
    for i, r in enumerate(rows):
        table.add_row(*[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in r],
                      key=keys[i] if keys else None)
    if rows:
        table.move_cursor(row=keys.index(key) if keys and key in keys else min(max(row, 0), len(rows) - 1))


def job_status(ws: Workspace, command: str, notes: int = 3) -> dict[str, Any]:
    """The newest job of `appliance COMMAND` with its latest step and notes (read in a worker: files only)."""
    job = jobs.latest(ws, command)
    return {"job": job, "step": (job.stages() or [None])[-1] if job else None, "notes": job.notes(notes) if job else []}


def job_line(status: dict[str, Any], unit: str) -> str:
    """`COMMAND job ID: STATE, DONE/TOTAL UNIT, last: MESSAGE` and the job's notes (its estimate, skipped files)."""
    job, step = status["job"], status["step"]
    if job is None:
        return ""
    total = "?" if step is None or step.total is None else step.total
    return (f"{job.command[0]} job {job.job_id}: {job.state}"
            + (f", {step.done}/{total} {unit}, last: {step.message}" if step else "")
            + "".join(f"\n  {n}" for n in status["notes"]))


def pct(v: float | None) -> str:
    return "" if v is None else f"{v:.0%}"
