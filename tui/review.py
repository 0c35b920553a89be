"""Review: the synthetic pairs with their source passage and filter scores; approve / reject / edit with single
keys, bulk approve by filter with a reason; every action recorded with the reviewer."""
from __future__ import annotations

from collections import Counter
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Select, Static

from appliance.sdg.review import STATUSES, approve_where, list_pairs, review
from tui.base import Pane, fill

COMMAND = "appliance tui: sdg review"


class ReviewPane(Pane):
    BINDINGS = [Binding("a", "approve", "Approve"), Binding("x", "reject", "Reject (reason)"),
                Binding("b", "bulk", "Approve all passing (reason)"), Binding("ctrl+s", "edit", "Save edit")]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Select([(s, s) for s in STATUSES], value="pending", allow_blank=False, id="review-status",
                         classes="narrow")
            yield Input(placeholder="reason (needed to reject or bulk approve)", id="review-reason")
        yield Static(id="review-counts", markup=False)
        yield DataTable(id="review-table", cursor_type="row")
        with VerticalScroll(classes="detail"):
            yield Static(id="review-detail", markup=False)
        yield Input(placeholder="edited question", id="review-question")
        yield Input(placeholder="edited answer (ctrl+s saves the edit)", id="review-answer")

    def load(self) -> dict[str, Any]:
        status = str(self.query_one("#review-status", Select).value)
        everything = list_pairs(self.ws, "all", with_sources=False)
        return {"pairs": list_pairs(self.ws, status), "counts": Counter(p["status"] for p in everything),
                "covered": len({p["file_name"] for p in everything if p["status"] in ("approved", "edited")}),
                "documents": len({p["file_name"] for p in everything})}

    def show(self, data: dict[str, Any]) -> None:
        self.pairs = data["pairs"]
        c = data["counts"]
        self.query_one("#review-counts", Static).update(
            " · ".join(f"{s} {c.get(s, 0)}" for s in STATUSES[:-1])
            + f" · documents with reviewed pairs {data['covered']}/{data['documents']}")
        fill(self.query_one("#review-table", DataTable), ["pair", "kind", "split", "status", "question"],
             [[p["pair_id"][:10], p["kind"], p["split"], p["status"], p["question"][:60]] for p in self.pairs],
             [p["pair_id"] for p in self.pairs])
        if not self.pairs:
            self.query_one("#review-detail", Static).update("no pairs in this state")

    def current(self) -> dict[str, Any] | None:
        pairs = getattr(self, "pairs", [])
        row = self.query_one("#review-table", DataTable).cursor_row
        return pairs[row] if pairs and 0 <= row < len(pairs) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        p = self.current()
        if p is None or p["pair_id"] == getattr(self, "shown", None):
            return          # a refill of the same pair: the edit boxes keep what is being typed
        self.shown = p["pair_id"]
        filters = "\n".join(f"  {'pass' if f['passed'] else 'FAIL'} {f['filter']}: {f['score']} (threshold "
                            f"{f['threshold']}) {f['detail'] or ''}" for f in p["filters"])
        self.query_one("#review-detail", Static).update(
            f"Q: {p['question']}\nA: {p['answer']}\nsource ({p['file_name']}, {p['section'][:40]}):\n{p.get('source', '')}\n"
            f"filters:\n{filters}")
        self.query_one("#review-question", Input).value = p["question"]
        self.query_one("#review-answer", Input).value = p["answer"]

    def on_select_changed(self, event: Select.Changed) -> None:
        self.reload()

    def _reason(self) -> str:
        return self.query_one("#review-reason", Input).value.strip()

    def _act(self, work: Any, said: str) -> None:
        def done(_: Any) -> None:
            self.app.notify(said)
            self.reload()
        self.background(work, done)

    def action_approve(self) -> None:
        p = self.current()
        if p is not None:
            self._act(lambda: review(self.ws, [p["pair_id"]], "approve", self._reason(), command=COMMAND),
                      f"approved {p['pair_id'][:10]}")

    def action_reject(self) -> None:
        p = self.current()
        if p is not None:
            self._act(lambda: review(self.ws, [p["pair_id"]], "reject", self._reason(), command=COMMAND),
                      f"rejected {p['pair_id'][:10]}")

    def action_bulk(self) -> None:
        self._act(lambda: approve_where(self.ws, self._reason(), command=COMMAND), "approved every passing pending pair")

    def action_edit(self) -> None:
        p = self.current()
        if p is not None:
            q, a = self.query_one("#review-question", Input).value, self.query_one("#review-answer", Input).value
            self._act(lambda: review(self.ws, [p["pair_id"]], "edit", self._reason(), question=q, answer=a,
                                     command=COMMAND), f"edited {p['pair_id'][:10]}")
