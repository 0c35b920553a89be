"""Ladder: start or resume the whole ladder as a job, its plan (each rung: reused or its estimate) beside what each
rung took as it finishes, and the decision record (verdict, rule, figures, ROI worksheet; the ROI inputs editable,
the record rendered again with them)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Markdown, Static

from appliance import jobs, views
from tui.base import Pane, fill
from tui.jobs import stage_rows

ROI_KEYS = ("questions_per_month", "hardware_cost_per_hour", "labour_cost_per_hour", "review_seconds_per_pair")


class LadderPane(Pane):
    BINDINGS = [Binding("s", "start(True)", "Start/resume --quick"), Binding("f", "start(False)", "Full ladder"),
                Binding("d", "decide", "Re-decide with ROI inputs")]
    refresh_seconds = 2.0

    def compose(self) -> ComposeResult:
        yield Static("ROI inputs: questions/month · hardware per hour · labour per hour · review seconds per pair "
                     "(d renders the record again with them)", classes="hint", markup=False)
        with Horizontal(classes="bar"):
            for key in ROI_KEYS:
                yield Input(value=str(getattr(self.app.ws.config.ladder, key)),  # type: ignore[attr-defined]
                            placeholder=key, id=f"roi-{key}", classes="roi")
        yield Static(id="ladder-status", markup=False)
        yield DataTable(id="ladder-rungs", cursor_type="row")
        with VerticalScroll(classes="record"):
            yield Markdown(id="ladder-record")

    def load(self) -> dict[str, Any]:
        runs = views.ladder_runs(self.ws)
        job = jobs.latest(self.ws, "ladder")
        decision = views.decisions(self.ws)[:1]
        record = ""
        if decision:
            paths = [p for p in json.loads(decision[0]["paths_json"] or "[]") if p.endswith(".md")]
            record = Path(paths[0]).read_text(encoding="utf-8") if paths and Path(paths[0]).is_file() else ""
        return {"run": runs[0] if runs else None, "rungs": views.rungs(self.ws, runs[0]["run_id"]) if runs else [],
                "job": job, "stages": stage_rows(job) if job else [], "decision": decision[0] if decision else None,
                "record": record}

    def show(self, data: dict[str, Any]) -> None:
        job, run, d = data["job"], data["run"], data["decision"]
        where = "now" if job and job.state == "running" else "last"
        lines = [f"ladder job {job.job_id}: {job.state}" + (f", {where} {data['stages'][-1][0]} {data['stages'][-1][1]}"
                                                          if data["stages"] else "") if job else
                 "no ladder job yet: s starts the quick profile, f the full one (docs/LADDER.md)"]
        if run:
            lines.append(f"ladder run {run['run_id']} {run['status'] or 'not finished'}")
        if d:
            lines.append(f"verdict: {d['verdict']} (rule {d['rule']}): {d['because']}")
        self.query_one("#ladder-status", Static).update("\n".join(lines))
        running = job is not None and job.state == "running"
        fill(self.query_one("#ladder-rungs", DataTable), ["rung", "plan", "took", "state"],
             [[r["label"], _planned(r["planned"]), f"{r['seconds']:.0f} s" if r["seconds"] is not None else "",
               "running" if r["state"] == "next" and running else r["state"]] for r in data["rungs"]])
        if data["record"] != getattr(self, "shown_record", None):
            self.shown_record = data["record"]
            self.query_one("#ladder-record", Markdown).update(data["record"] or "*no decision record yet*")

    def action_start(self, quick: bool) -> None:
        running = jobs.latest(self.ws, "ladder", "running")
        if running:
            self.app.notify(f"the ladder is already running (job {running.job_id})", severity="warning")
            return
        self.start_job(["ladder", *(["--quick"] if quick else [])], "It reuses what a killed ladder finished.")

    def action_decide(self) -> None:
        sets = []
        for key in ROI_KEYS:
            sets += ["--set", f"ladder.{key}={self.query_one(f'#roi-{key}', Input).value.strip()}"]
        self.start_job([*sets, "decide"], "The record is rendered again with these ROI inputs.")


def _planned(v: str | float | None) -> str:
    return "" if v is None else v if isinstance(v, str) else f"~{v / 60:.1f} min" if v >= 60 else f"~{v:.0f} s"
