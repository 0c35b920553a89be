"""Documents: what is indexed (access groups, chunks), what was skipped and why; ingest a folder as a job."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static

from appliance import views
from tui.base import Pane, fill, job_line, job_status


class DocumentsPane(Pane):
    BINDINGS = [Binding("f6", "prune", "Ingest + prune")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Input(placeholder="folder or file to ingest, Enter starts a job", id="docs-path")
            yield Input(placeholder="access groups (a,b)", id="docs-groups", classes="narrow")
        yield Static(id="docs-job", markup=False)
        yield DataTable(id="docs-table", cursor_type="row")
        yield Static(id="docs-reason", markup=False)

    refresh_seconds = 2.0

    def load(self) -> dict[str, Any]:
        return {"rows": views.documents(self.ws), "job": job_status(self.ws, "ingest")}

    def show(self, data: dict[str, Any]) -> None:
        rows = data["rows"]
        self.query_one("#docs-job", Static).update(job_line(data["job"], "files"))
        self.rows = rows
        fill(self.query_one("#docs-table", DataTable), ["file", "status", "groups", "chunks", "when"],
             [[Path(r["path"]).name, r["status"], r["groups"], r["chunks"], r["when"]] for r in rows])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        rows = getattr(self, "rows", [])
        if 0 <= event.cursor_row < len(rows):
            r = rows[event.cursor_row]
            self.query_one("#docs-reason", Static).update(f"{r['path']}\n{r['reason']}" if r["reason"] else r["path"])

    def _ingest(self, extra: list[str]) -> None:
        path = self.query_one("#docs-path", Input).value.strip()
        if not path:
            self.app.notify("type a folder or file first", severity="warning")
            return
        groups = self.query_one("#docs-groups", Input).value.strip()
        self.start_job(["ingest", path, *(["--groups", groups] if groups else []), *extra], "Its files appear here.")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._ingest([])

    def action_prune(self) -> None:
        self._ingest(["--prune"])
