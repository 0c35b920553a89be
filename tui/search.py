"""Search: the retriever as a caller with chosen access groups sees it."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Select, Static

from appliance.choices import RETRIEVAL_MODES
from tui.base import Pane, fill


class SearchPane(Pane):
    primary = "#search-query"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Input(placeholder="query, Enter searches", id="search-query")
            yield Select([(m, m) for m in RETRIEVAL_MODES], value="hybrid", allow_blank=False, id="search-mode",
                         classes="narrow")
            yield Input(placeholder="as groups (a,b)", id="search-groups", classes="narrow")
        yield DataTable(id="search-hits", cursor_type="row")
        yield Static(id="search-text", classes="detail", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        query = self.query_one("#search-query", Input).value
        mode = str(self.query_one("#search-mode", Select).value)
        groups = [g.strip() for g in self.query_one("#search-groups", Input).value.split(",") if g.strip()]
        self.query_one("#search-text", Static).update("searching…")
        self.background(lambda: self._search(query, mode, groups), self._show_hits, store=False)

    def _search(self, query: str, mode: str, groups: list[str]) -> Any:
        from appliance.access import entitlement
        from appliance.retrieval import Retriever

        retriever = Retriever(self.ws.config, self.ws.index_dir)   # fresh: an ingest may have changed the index
        retriever.require_chunks()
        return retriever.search(query, mode=mode, groups=entitlement(self.ws.config).check(groups))

    def _show_hits(self, result: Any) -> None:
        self.hits = result.hits
        fill(self.query_one("#search-hits", DataTable), ["#", "score", "file", "page", "section", "groups"],
             [[h.rank, f"{h.score:.4f}", h.file_name, h.page_start or "", h.section[:30], ",".join(h.groups) or "public"]
              for h in result.hits])
        self.query_one("#search-text", Static).update(
            f"{len(result.hits)} hits, {result.mode}, {result.latency_ms:.0f} ms" if result.hits else "no hits")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        hits = getattr(self, "hits", [])
        if 0 <= event.cursor_row < len(hits):
            self.query_one("#search-text", Static).update(hits[event.cursor_row].text[:800])
