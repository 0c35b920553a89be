"""Train: start, cancel, resume a training job; the training and validation loss as they are recorded; export to
GGUF with its equivalence check."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static
from textual_plotext import PlotextPlot

from appliance import views
from tui.base import Pane, fill


class TrainPane(Pane):
    BINDINGS = [Binding("f4", "export", "Export adapter to GGUF")]
    chosen: str | None = None       # the training run whose curve is shown (None: the newest)
    refresh_seconds = 5.0

    def compose(self) -> ComposeResult:
        with Horizontal(classes="bar"):
            yield Input(placeholder="dataset id (blank: the latest), Enter starts training", id="train-dataset")
            yield Input(placeholder="adapter to export (F4)", id="train-adapter", classes="narrow")
        yield DataTable(id="train-runs", cursor_type="row")
        yield PlotextPlot(id="train-plot")
        yield Static(id="train-models", markup=False)

    def load(self) -> dict[str, Any]:
        runs = views.train_runs(self.ws)
        chosen = self.chosen if any(r["run_id"] == self.chosen for r in runs) else (runs[0]["run_id"] if runs else None)
        return {"runs": runs, "curve": views.curve(self.ws, chosen) if chosen else {}, "run": chosen,
                "models": views.models_made(self.ws), "checks": views.equivalence(self.ws)}

    def show(self, data: dict[str, Any]) -> None:
        fill(self.query_one("#train-runs", DataTable), ["run", "started", "status", "steps", "train", "validation"],
             [[r["run_id"][:12], str(r["started_at"])[5:16], r["status"] or "running/killed", r["steps"],
               f"{r['train_loss']:.3f}" if r["train_loss"] is not None else "",
               f"{r['validation_loss']:.3f}" if r["validation_loss"] is not None else ""] for r in data["runs"]],
             [r["run_id"] for r in data["runs"]])
        plot = self.query_one("#train-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.title(f"loss, run {(data['run'] or '')[:12]}")
        for split, points in data["curve"].items():
            if points:
                plt.plot([s for s, _ in points], [v for _, v in points], label=split, marker="braille")
        plot.refresh()
        made, checks = data["models"][:3], data["checks"]
        self.query_one("#train-models", Static).update(
            "models made here: " + ("; ".join(f"{m['name']} ({m['role']})" for m in made) if made else "none yet")
            + ("\nlast export's check: " + "; ".join(
                f"{c['form']} {'passed' if c['passed'] else 'FAILED'} (agreement {c['agreement']:.0%}, "
                f"logprob diff {c['logprob_diff']:.3f})" for c in checks) if checks else ""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key and key != (self.chosen or key):         # another run chosen (a refill highlights the same one)
            self.chosen = key
            self.reload()
        elif key:
            self.chosen = key

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "train-dataset":
            self.action_export()
            return
        dataset = event.value.strip()
        self.start_job(["train", *(["--dataset", dataset] if dataset else [])], "Its losses appear here as it goes.")

    def action_export(self) -> None:
        adapter = self.query_one("#train-adapter", Input).value.strip()
        if not adapter:
            self.app.notify("type the adapter's name (see the models made here)", severity="warning")
            return
        self.start_job(["export", "gguf", "--adapter", adapter], "Its equivalence check appears here.")
