"""Home: the workspace at a glance."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from appliance import jobs, views
from tui.base import Pane, fill


class HomePane(Pane):
    refresh_seconds = 3.0

    def compose(self) -> ComposeResult:
        yield Static(id="home-summary", markup=False)
        yield DataTable(id="home-runs", cursor_type="row")

    def load(self) -> dict[str, Any]:
        return {"summary": views.summary(self.ws),
                "running": [j for j in jobs.list_jobs(self.ws) if j.state == "running"]}

    def show(self, data: dict[str, Any]) -> None:
        s, running = data["summary"], data["running"]
        d = s["decision"]
        lines = [f"workspace  {self.ws.root}",
                 f"documents  {s['documents']} indexed, {s['chunks']} chunks"
                 + (f", {s['skipped']} skipped (see Docs)" if s["skipped"] else ""),
                 "decision   " + (f"{d['verdict']} (rule {d['rule']}, {str(d['created_at'])[:16]})" if d
                                  else "none yet: start the ladder (key 7, then s)"),
                 "jobs       " + (", ".join(f"{j.title[:30]} [{j.state}]" for j in running) if running
                                  else "none running")]
        self.query_one("#home-summary", Static).update("\n".join(lines))
        fill(self.query_one("#home-runs", DataTable), ["run", "kind", "started", "status", "answers"],
             [[r["run_id"][:12], r["kind"], str(r["started_at"])[:16], r["status"] or "running/killed",
               r["n_answers"]] for r in s["runs"]])
