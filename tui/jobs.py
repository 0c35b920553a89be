"""Jobs: every long command started from here runs as a process of its own; this follows it from its recorded
events, after a reconnect too, and cancels or resumes it."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Log, Static

from appliance import jobs
from tui.base import Pane, fill, selected_key


def stage_rows(job: jobs.Job) -> list[list[Any]]:
    rows = []
    for e in job.stages():
        total = e.total if e.total is not None else "?"
        eta = f"{e.eta_s:.0f} s" if e.eta_s is not None and job.state == "running" else ""
        rows.append([e.stage, f"{e.done}/{total}", eta, e.message[:50]])
    return rows


class JobsPane(Pane):
    BINDINGS = [Binding("c", "cancel", "Cancel job"), Binding("r", "resume", "Resume job")]
    refresh_seconds = 1.0
    chosen: str | None = None       # the highlighted job's id (None: the newest)

    def compose(self) -> ComposeResult:
        yield Static("Jobs (run as processes of their own: closing this UI or the SSH session does not stop them)",
                     classes="title")
        yield DataTable(id="jobs-table", cursor_type="row")
        yield DataTable(id="jobs-stages", cursor_type="row")
        yield Log(id="jobs-log", max_lines=400)

    def load(self) -> dict[str, Any]:
        listed = jobs.list_jobs(self.ws)
        rows = [jobs.describe(j) for j in listed]
        chosen = next((j for j in listed if j.job_id == self.chosen), listed[0] if listed else None)
        return {"rows": rows, "job": chosen, "stages": stage_rows(chosen) if chosen else [],
                "log": chosen.log_tail(60) if chosen else []}

    def show(self, data: dict[str, Any]) -> None:
        rows = data["rows"]
        fill(self.query_one("#jobs-table", DataTable), ["job", "state", "stage", "done", "command"],
             [[r["job_id"], r["state"], r["stage"], f"{r['done']}/{r['total']}" if r["done"] is not None else "",
               r["title"][:60]] for r in rows], [r["job_id"] for r in rows])
        fill(self.query_one("#jobs-stages", DataTable), ["stage", "done", "left", "last"], data["stages"])
        log = self.query_one("#jobs-log", Log)
        log.clear()
        log.write_lines(data["log"])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs-table" and event.row_key.value != self.chosen:
            self.chosen = event.row_key.value
            self.reload()

    def selected(self) -> jobs.Job | None:
        key = selected_key(self.query_one("#jobs-table", DataTable))
        return jobs.get(self.ws, key) if key else None

    def action_cancel(self) -> None:
        job = self.selected()
        if job is not None:
            self.background(lambda: jobs.cancel(job), lambda _: self.app.notify(f"asked job {job.job_id} to stop"),
                            store=False)

    def action_resume(self) -> None:
        job = self.selected()
        if job is not None:
            self.background(lambda: jobs.resume(self.ws, job),
                            lambda j: self.app.notify(f"job {j.job_id} started: {j.title}", markup=False))
