"""Audit: the auditors' read-only SQL console over the store (the same guard as `appliance audit sql`), the
documented views one key away, `audit verify` with its findings, a result exported to CSV."""
from __future__ import annotations

import csv
from datetime import datetime
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, OptionList, Static

from appliance import views
from appliance.audit.chain import VerifyReport
from tui.base import Pane, fill


class AuditPane(Pane):
    BINDINGS = [Binding("f2", "views", "Views"), Binding("f3", "verify", "Verify the chain"),
                Binding("f4", "export", "Export CSV")]
    primary = "#audit-sql"

    def compose(self) -> ComposeResult:
        yield Input(placeholder="SELECT … (Enter runs it, read-only); F2: the views", id="audit-sql")
        yield OptionList(id="audit-views")
        yield DataTable(id="audit-result", cursor_type="row")
        yield Static(id="audit-status", markup=False)

    def load(self) -> list[str]:
        return views.auditor_views(self.ws)

    def show(self, names: list[str]) -> None:
        box = self.query_one("#audit-views", OptionList)
        box.clear_options()
        box.add_options(names)

    def action_views(self) -> None:
        self.query_one("#audit-views", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        box = self.query_one("#audit-sql", Input)
        box.value = f"SELECT * FROM {event.option.prompt} LIMIT 100"
        self.run_sql(box.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_sql(event.value)

    def run_sql(self, statement: str) -> None:
        self.background(lambda: views.sql(self.ws, statement), self._show_result)

    def _show_result(self, result: tuple[list[str], list[tuple[Any, ...]]]) -> None:
        self.result = result
        names, rows = result
        fill(self.query_one("#audit-result", DataTable), names,
             [[("NULL" if v is None else str(v))[:60] for v in r] for r in rows[:1000]])
        self.query_one("#audit-status", Static).update(f"{len(rows)} rows" + (" (first 1000 shown)" if len(rows) > 1000
                                                                               else ""))

    def action_verify(self) -> None:
        from appliance.audit import AuditStore

        def verify() -> Any:
            with AuditStore(self.ws.audit_path) as store:
                return store.verify()
        self.query_one("#audit-status", Static).update("verifying…")
        self.background(verify, lambda r: self.query_one("#audit-status", Static).update(_verdict(r)))

    def action_export(self) -> None:
        result = getattr(self, "result", None)
        if result is None:
            self.app.notify("run a query first", severity="warning")
            return
        out = self.ws.reports_dir / f"audit-{datetime.now():%Y%m%d-%H%M%S}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(result[0])
            w.writerows(result[1])
        self.query_one("#audit-status", Static).update(f"wrote {out}")


def _verdict(report: VerifyReport) -> str:
    head = f"audit verify: {report.verdict()} ({report.rows} rows in {report.runs} runs, ledger head " \
           f"{(report.head or '')[:16]})"
    return "\n".join([head] + [f"  {f}" for f in report.findings[:20]])
