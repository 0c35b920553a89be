"""What every pane shares: its data is loaded off the UI thread (nothing freezes the screen) and shown when ready."""
from __future__ import annotations

import threading
from typing import Any

from textual.containers import Vertical
from textual.widgets import DataTable

from appliance.audit import AuditError
from appliance.errors import UsageError
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
        try:
            with STORE:
                data = self.load()
        except (UsageError, AuditError) as e:
            self.app.call_from_thread(self.app.notify, str(e), severity="error")
            return
        self.app.call_from_thread(self.show, data)

    def load(self) -> Any:
        return None

    def show(self, data: Any) -> None:
        pass

    def background(self, work: Any, done: Any = None) -> None:
        """Run `work()` off the UI thread, then `done(result)` on it; a usage or store error is shown, not raised."""
        def run() -> None:
            try:
                with STORE:
                    result = work()
            except (UsageError, AuditError) as e:
                self.app.call_from_thread(self.app.notify, str(e), severity="error")
                return
            if done is not None:
                self.app.call_from_thread(done, result)
        self.run_worker(run, thread=True, group=f"work-{self.id}")


def fill(table: DataTable, columns: list[str], rows: list[list[Any]], keys: list[str] | None = None) -> None:
    """Replace a table's content, keeping the cursor row where it was."""
    row = table.cursor_row
    table.clear(columns=True)
    table.add_columns(*columns)
    for i, r in enumerate(rows):
        table.add_row(*["" if v is None else str(v) for v in r], key=keys[i] if keys else None)
    if rows:
        table.move_cursor(row=min(row, len(rows) - 1))


def pct(v: float | None) -> str:
    return "" if v is None else f"{v:.0%}"
