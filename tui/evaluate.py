"""Evaluate: start an evaluation as a job; a run as a question x condition matrix (symbols and colour), filtered by
failure kind; a cell in full; two runs compared (flips, McNemar, interval)."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Select, Static

from appliance import views
from appliance.choices import STRATEGIES
from tui.base import Pane, fill, job_line, job_status, pct

COLOURS = {views.PASS: "green", views.FAIL: "red", views.REFUSED: "yellow"}


class EvaluatePane(Pane):
    BINDINGS = [Binding("m", "mark", "Mark run A"), Binding("x", "compare", "Compare A with this"),
                Binding("enter", "detail", "Answer in full", show=False)]

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Input(placeholder="golden set (JSONL), Enter starts eval answers", id="eval-questions")
            yield Input(value="closed-book,oracle,rag", id="eval-conditions", classes="narrow")
            yield Select([], prompt="failure kind", id="eval-filter", classes="narrow")
        with Horizontal(classes="bar"):
            yield Select([(x, x) for x in STRATEGIES], value="single", allow_blank=False, id="eval-strategy",
                         classes="narrow")
            yield Input(placeholder="model (default: models.generator)", id="eval-model")
            yield Input(placeholder="adapter (optional)", id="eval-adapter")
        job = Static(id="eval-job", markup=False)
        job.display = False                 # shown once there is an eval job to follow
        yield job
        yield DataTable(id="eval-runs", cursor_type="row")
        yield DataTable(id="eval-matrix", cursor_type="cell")
        with VerticalScroll(classes="detail"):
            yield Static(id="eval-detail", markup=False)

    def on_mount(self) -> None:
        self.set_interval(2.0, self._follow_job)

    def _follow_job(self) -> None:
        if self.is_on_screen:
            self.background(lambda: job_status(self.ws, "eval"), self._show_job, store=False)

    def _show_job(self, status: dict[str, Any]) -> None:
        """The newest eval job: its estimate (its first note) before its first answer, then its progress; when it
        ends, its run joins the list."""
        line = self.query_one("#eval-job", Static)
        line.update(job_line(status, "answers"))
        line.display = status["job"] is not None
        job = status["job"]
        seen, self.job_seen = getattr(self, "job_seen", None), (job.job_id, job.state) if job else None
        if seen is not None and seen != self.job_seen:
            self.reload()

    def load(self) -> list[dict[str, Any]]:
        return views.eval_runs(self.ws)

    def show(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        fill(self.query_one("#eval-runs", DataTable), ["run", "started", "model", "strategy", "closed", "oracle", "rag"],
             [[r["run_id"][:12], str(r["started_at"])[5:16], r["models"][:16], r["strategy"],
               pct(r["accuracy"].get("closed-book")), pct(r["accuracy"].get("oracle")), pct(r["accuracy"].get("rag"))]
              for r in runs], [r["run_id"] for r in runs])

    def run_id(self) -> str | None:
        table = self.query_one("#eval-runs", DataTable)
        runs = getattr(self, "runs", [])
        return runs[table.cursor_row]["run_id"] if runs and 0 <= table.cursor_row < len(runs) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "eval-runs":
            self.load_matrix()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "eval-filter":
            self.load_matrix()

    def load_matrix(self) -> None:
        run_id = self.run_id()
        if run_id is None:
            return
        value = self.query_one("#eval-filter", Select).value
        kind = value if isinstance(value, str) else None
        self.background(lambda: (views.matrix(self.ws, run_id, kind), views.failure_kinds(self.ws, run_id)),
                        self._show_matrix)

    def _show_matrix(self, data: Any) -> None:
        (conditions, rows), kinds = data
        self.conditions, self.matrix_rows = conditions, rows
        table = self.query_one("#eval-matrix", DataTable)
        table.clear(columns=True)
        table.add_columns("question", "kind", *conditions)
        for r in rows:
            cells = []
            for c in conditions:
                v = r["cells"].get(c)
                text = f"{v['symbol']} {v['failure_kind'] if v['symbol'] != views.PASS else ''}" if v else views.MISSING
                cells.append(Text(text, style=COLOURS[v["symbol"]]) if v else Text(text))
            table.add_row(r["question_id"], r["kind"], *cells)
        select = self.query_one("#eval-filter", Select)
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options([(f"{k} ({n})", k) for k, n in kinds])
            if isinstance(current, str) and current in {k for k, _ in kinds}:
                select.value = current

    def action_detail(self) -> None:
        table = self.query_one("#eval-matrix", DataTable)
        rows, run_id = getattr(self, "matrix_rows", []), self.run_id()
        if not rows or run_id is None or not table.has_focus:
            return
        row, col = table.cursor_coordinate
        condition = self.conditions[max(0, col - 2)] if self.conditions else "rag"
        qid = rows[row]["question_id"]
        self.background(lambda: views.cell(self.ws, run_id, qid, condition), self._show_cell)

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        if event.data_table.id == "eval-matrix":
            self.action_detail()

    def _show_cell(self, c: dict[str, Any] | None) -> None:
        if c is None:
            self.query_one("#eval-detail", Static).update("no answer recorded for this cell")
            return
        passages = "\n".join(f"  #{i + 1} {p.get('file_name', '')} {p.get('section', '')[:40]}: "
                             f"{' '.join(str(p.get('text', '')).split())[:160]}" for i, p in enumerate(c["passages"]))
        self.query_one("#eval-detail", Static).update(
            f"Q: {c['question']}\nA: {c['output']}\nverdict {c['verdict']} by {c['method']}, failure {c['failure_kind']},"
            f" refused {c['refused']}, evidence in context {c['evidence_in_context']}, {c['latency_ms']:.0f} ms\n"
            f"why: {c['reason']}\npassages:\n{passages or '  (none)'}\nprompt:\n{c['prompt']}")

    def action_mark(self) -> None:
        self.marked = self.run_id()
        self.app.notify(f"run A: {self.marked}; move to run B and press x")

    def action_compare(self) -> None:
        a, b = getattr(self, "marked", None), self.run_id()
        if not a or not b or a == b:
            self.app.notify("mark run A with m, then choose another run and press x", severity="warning")
            return
        from appliance.evaluation.compare import compare_runs

        self.background(lambda: compare_runs(self.ws, a, b, command=f"appliance tui: compare {a} {b}"),
                        self._show_compare)

    def _show_compare(self, result: dict[str, Any]) -> None:
        lines = [f"A {result['run_a']} vs B {result['run_b']} (recorded as run {result['run_id']})"]
        for cond, t in result["conditions"].items():
            lines.append(f"{cond}: {t['accuracy_a']:.0%} -> {t['accuracy_b']:.0%} on {t['n']} questions, McNemar p "
                         f"{t['p_value']:.3g}, difference {t['ci_low']:+.0%}..{t['ci_high']:+.0%}, {t['verdict']}")
            for f in t["flips"]:
                lines.append(f"  {f['question_id']}: {f['a']} -> {f['b']}"
                             + ("  (regression)" if f["a"] == "correct" else ""))
        self.query_one("#eval-detail", Static).update("\n".join(lines))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in any of the boxes starts `eval answers` as a job (it measures the model's speed and says its
        estimate before its first answer; Jobs can cancel it then)."""
        questions = self.query_one("#eval-questions", Input).value.strip()
        if not questions:
            self.app.notify("type the golden set's path first", severity="warning")
            return
        argv = ["eval", "answers", "--questions", questions,
                "--conditions", self.query_one("#eval-conditions", Input).value.strip() or "closed-book,oracle,rag",
                "--strategy", str(self.query_one("#eval-strategy", Select).value)]
        for flag, box in (("--model", "#eval-model"), ("--adapter", "#eval-adapter")):
            value = self.query_one(box, Input).value.strip()
            argv += [flag, value] if value else []
        self.start_job(argv, "Its estimate, then its progress, show above the runs (and in Jobs, 9).")
