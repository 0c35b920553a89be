"""`appliance tui`: one tab per rung, keyboard-first, legible at 80x24 on a 16-colour terminal."""
from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, TabbedContent, TabPane

from appliance.workspace import Workspace
from tui.audit import AuditPane
from tui.documents import DocumentsPane
from tui.evaluate import EvaluatePane
from tui.home import HomePane
from tui.jobs import JobsPane
from tui.ladder import LadderPane
from tui.review import ReviewPane
from tui.search import SearchPane
from tui.train import TrainPane

TABS = [("home", "Home", HomePane), ("docs", "Docs", DocumentsPane), ("search", "Search", SearchPane),
        ("eval", "Eval", EvaluatePane), ("review", "Review", ReviewPane), ("train", "Train", TrainPane),
        ("ladder", "Ladder", LadderPane), ("audit", "Audit", AuditPane), ("jobs", "Jobs", JobsPane)]

CSS = """
Screen { layout: vertical; }
TabbedContent, TabPane { height: 1fr; }
TabPane { padding: 0; }
.bar { height: 1; }
Input { height: 1; border: none; padding: 0 1; background: $boost; width: 1fr; }
Input:focus { background: $accent 30%; }
.narrow { width: 24; }
.roi { width: 1fr; }
Select { height: 1; }
Select > SelectCurrent { border: none; height: 1; padding: 0 1; }
DataTable { height: 1fr; }
.detail { height: 7; border-top: solid $primary; }
.record { height: 2fr; }
#home-summary { height: auto; padding: 0 1; }
#docs-job, #eval-job { height: auto; max-height: 4; }
#audit-views { height: 5; }
#jobs-table { height: 7; }
#jobs-stages { height: 5; }
#train-plot { height: 1fr; }
#train-runs { height: 5; }
#eval-runs { height: 5; }
#ladder-rungs { height: 6; }
"""


class ApplianceApp(App[None]):
    TITLE = "appliance"
    CSS = CSS
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+r", "reload", "Reload", show=False),
                Binding("escape", "leave_input", "Leave input", show=False),
                *[Binding(str(i + 1), f"show_tab('{tab}')", label, show=False) for i, (tab, label, _) in enumerate(TABS)]]

    def __init__(self, ws: Workspace, overrides: list[str] | None = None) -> None:
        super().__init__()
        self.ws = ws
        self.overrides = overrides or []      # the --set options the UI was started with; its jobs get them too

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="home"):
            for i, (tab, label, pane) in enumerate(TABS):
                with TabPane(f"{i + 1} {label}", id=tab):
                    yield pane(id=f"pane-{tab}")
        yield Footer()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        pane = self.query_one(f"#pane-{tab}")
        if pane.primary:     # type: ignore[attr-defined]
            self.query_one(pane.primary).focus()   # type: ignore[attr-defined]
        else:
            self.action_leave_input()

    def action_leave_input(self) -> None:
        """Focus the active tab's first table (keys then act on it; digits switch tabs again)."""
        pane = self.query_one(f"#pane-{self.query_one(TabbedContent).active}")
        target = next(iter(pane.query(DataTable)), None) or next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            target.focus()

    def action_reload(self) -> None:
        active = self.query_one(TabbedContent).active
        self.query_one(f"#pane-{active}").reload()     # type: ignore[attr-defined]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for i, (tab, label, _) in enumerate(TABS):
            yield SystemCommand(f"Go to {label}", f"key {i + 1}", lambda t=tab: self.action_show_tab(t))
        ladder = lambda: self.query_one("#pane-ladder", LadderPane)  # noqa: E731
        yield SystemCommand("Start the ladder (quick)", "every rung as a job, resumable",
                            lambda: ladder().action_start(True))
        yield SystemCommand("Start the ladder (full)", "the default profile", lambda: ladder().action_start(False))
        yield SystemCommand("Verify the audit chain", "audit verify",
                            lambda: self.query_one("#pane-audit", AuditPane).action_verify())


def run(ws: Workspace, overrides: list[str] | None = None) -> None:
    ApplianceApp(ws, overrides).run()
