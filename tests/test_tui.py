"""The terminal UI driven headless with Textual's Pilot, screen by screen, on a real workspace (the sample corpus
ingested, evaluations and synthetic pairs made with scripted generators); jobs as real processes that outlive the
UI; snapshots at 80x24; and the app in tmux over a pseudo-terminal."""
from __future__ import annotations

import asyncio
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerCancelled
from textual_plotext import PlotextPlot

from appliance import jobs, views
from appliance.cli import main
from appliance.evaluation.answers import evaluate_answers
from appliance.llm.fake import FakeGenerator
from appliance.models import REPO_ROOT
from appliance.workspace import open_workspace
from tui.app import ApplianceApp

SAMPLES = REPO_ROOT / "samples"
CORPUS_FILES = sorted(p.name for p in (SAMPLES / "corpus").iterdir() if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def ws_dir(tmp_path_factory) -> Path:
    """The samples ingested; two evaluation runs of three questions and ten synthetic pairs by scripted models."""
    from appliance.sdg.generate import generate_pairs
    from tests.test_evaluation import JUDGE_SAYS_INCORRECT, small_set
    from tests.test_sdg import scripted_writer

    root = tmp_path_factory.mktemp("tuiws") / "ws"
    corpus = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(SAMPLES / "corpus", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    questions = small_set(tmp_path_factory.mktemp("q"), ["s07", "s12", "s28"])
    for answer in ("I don't know.", "Red"):
        evaluate_answers(open_workspace(root), questions, generator=FakeGenerator(lambda *_, a=answer: a),
                         judge_generator=FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT))
    generate_pairs(open_workspace(root, ["sdg.target_pairs=10", "sdg.probe_questions=0"]), generator=scripted_writer())
    return root


def drive(ws_dir: Path, steps, size: tuple[int, int] = (80, 24)):
    """Run the app headless at `size` and hand its pilot to `steps` (an async function); returns its result."""
    async def go():
        app = ApplianceApp(open_workspace(ws_dir))
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            return await steps(pilot, app)
    return asyncio.run(go())


async def settle(pilot) -> None:
    """Let every loading worker finish and its result reach the screen."""
    for _ in range(3):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:        # a newer load replaced it (exclusive workers)
            pass
        await pilot.pause(0.05)


def table_rows(app, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def test_home_shows_the_workspace_at_a_glance(ws_dir: Path) -> None:
    async def steps(pilot, app):
        return text(app, "#home-summary"), table_rows(app, "#home-runs")
    summary, runs = drive(ws_dir, steps)
    docs = views.documents(open_workspace(ws_dir))
    indexed = [d for d in docs if d["status"] == "indexed"]
    assert f"documents  {len(indexed)} indexed, {sum(d['chunks'] for d in indexed)} chunks" in summary
    assert "decision   none yet" in summary and "jobs       none running" in summary
    kinds = [r[1] for r in runs]
    assert kinds.count("eval-answers") == 2 and "ingest" in kinds and "sdg-generate" in kinds


def test_documents_lists_every_file_with_its_groups(ws_dir: Path) -> None:
    async def steps(pilot, app):
        await pilot.press("2")
        await settle(pilot)
        return table_rows(app, "#docs-table")
    rows = drive(ws_dir, steps)
    assert sorted(r[0] for r in rows) == CORPUS_FILES
    groups = {r[0]: r[2] for r in rows}
    assert groups["salary-bands-2026.md"] == "hr" and groups["information-security-policy.md"] == "public"


def test_search_shows_hits_with_their_source(ws_dir: Path) -> None:
    async def steps(pilot, app):
        await pilot.press("3")
        await pilot.press(*"firmware recommended version", "enter")
        await settle(pilot)
        hits = table_rows(app, "#search-hits")
        await pilot.press("escape", "down")
        await settle(pilot)
        return hits, text(app, "#search-text")
    hits, shown = drive(ws_dir, steps)
    assert hits and hits[0][2] == "ws400-firmware-release-notes.txt"
    from appliance.retrieval import Retriever
    ws = open_workspace(ws_dir)
    expected = Retriever(ws.config, ws.index_dir).search("firmware recommended version")
    assert [h[2] for h in hits] == [h.file_name for h in expected.hits]
    assert shown[:60] == expected.hits[1].text[:60]      # the highlighted hit's text


def test_evaluate_matrix_cell_and_comparison(ws_dir: Path) -> None:
    ws = open_workspace(ws_dir)
    runs = views.eval_runs(ws)

    async def steps(pilot, app):
        await pilot.press("4")
        await settle(pilot)
        listed = table_rows(app, "#eval-runs")
        matrix = table_rows(app, "#eval-matrix")
        app.query_one("#eval-matrix", DataTable).focus()
        await pilot.press("right", "right", "enter")      # the first question's closed-book cell
        await settle(pilot)
        cell = text(app, "#eval-detail")
        app.query_one("#eval-runs", DataTable).focus()
        await pilot.press("m", "down")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        return listed, matrix, cell, text(app, "#eval-detail")
    listed, matrix, cell, compared = drive(ws_dir, steps, size=(120, 40))
    assert [r[0] for r in listed] == [r["run_id"][:12] for r in runs]
    conditions, rows = views.matrix(ws, runs[0]["run_id"])
    assert [r[0] for r in matrix] == [r["question_id"] for r in rows] == ["s07", "s12", "s28"]
    for shown, row in zip(matrix, rows):          # a symbol in every cell, read from the judgements
        for c, value in zip(conditions, shown[2:]):
            assert value.startswith(row["cells"][c]["symbol"])
    detail = views.cell(ws, runs[0]["run_id"], "s07", "closed-book")
    assert f"Q: {detail['question']}" in cell and f"A: {detail['output']}" in cell and "prompt:" in cell
    assert "McNemar p" in compared and runs[0]["run_id"] in compared and runs[1]["run_id"] in compared


def test_review_approves_rejects_and_edits_with_the_reviewer_recorded(ws_dir: Path) -> None:
    async def steps(pilot, app):
        await pilot.press("5")
        await settle(pilot)
        before = table_rows(app, "#review-table")
        await pilot.press("a")                            # approve the first pending pair
        await settle(pilot)
        await pilot.press("x")                            # reject without a reason: refused, said on screen
        await settle(pilot)
        app.query_one("#review-reason", Input).value = "answer is a heading"
        app.query_one("#review-table", DataTable).focus()
        await pilot.press("x")
        await settle(pilot)
        app.query_one("#review-answer", Input).value = "an edited answer"
        app.query_one("#review-table", DataTable).focus()
        await pilot.press("ctrl+s")
        await settle(pilot)
        return before, text(app, "#review-counts")
    before, counts = drive(ws_dir, steps, size=(100, 30))
    con = duckdb.connect(str(ws_dir / "audit.duckdb"), read_only=True)
    actions = con.execute("SELECT pair_id, action, reason, answer, reviewer FROM sdg_reviews ORDER BY created_at, seq"
                          ).fetchall()
    con.close()
    ids = [r[0] for r in before]
    assert [(a[0][:10], a[1]) for a in actions] == [(ids[0], "approve"), (ids[1], "reject"), (ids[2], "edit")]
    assert actions[1][2] == "answer is a heading" and actions[2][3] == "an edited answer" and actions[0][4]
    assert "approved 1" in counts and "rejected 1" in counts and "edited 1" in counts


def test_train_plots_the_recorded_losses_and_shows_the_export_check(ws_dir: Path, tmp_path: Path) -> None:
    from appliance.export.check import Equivalence

    ws = open_workspace(ws_dir)
    if not views.train_runs(ws):          # a training run's recorded steps (what `appliance train` writes)
        with ws.run("train", "test: recorded losses") as run:
            for step, loss in ((1, 2.0), (2, 1.5), (3, 1.1)):
                run.append("train_steps", step=step, epoch=step / 3, split="train", loss=loss, learning_rate=2e-4,
                           tokens=100 * step, token_accuracy=None, seconds=float(step))
            run.append("train_steps", step=3, epoch=1.0, split="validation", loss=1.3, learning_rate=None,
                       tokens=None, token_accuracy=None, seconds=3.0)
        with ws.run("export", "test: an export's check") as run:   # what `appliance export gguf` records
            for form, agreement in (("base", 1.0), ("adapter", 0.4)):
                run.event("export_equivalence", **Equivalence(form, 8, 128, agreement, 0.02, 0.6, 0.25).to_dict())

    async def steps(pilot, app):
        await pilot.press("6")
        await settle(pilot)
        app.query_one("#train-plot", PlotextPlot)
        return table_rows(app, "#train-runs"), text(app, "#train-models")
    rows, shown = drive(ws_dir, steps)
    assert rows[0][3:] == ["3", "1.100", "1.300"]
    assert "base passed (agreement 100%" in shown and "adapter FAILED (agreement 40%" in shown
    assert views.curve(ws, views.train_runs(ws)[0]["run_id"]) == {"train": [(1, 2.0), (2, 1.5), (3, 1.1)],
                                                                  "validation": [(3, 1.3)]}


def test_audit_console_is_read_only_verifies_and_exports(ws_dir: Path) -> None:
    async def steps(pilot, app):
        await pilot.press("8")
        await settle(pilot)
        box = app.query_one("#audit-sql", Input)
        box.value = "SELECT kind, count(*) AS n FROM runs GROUP BY kind ORDER BY kind"
        box.focus()
        await pilot.press("enter")
        await settle(pilot)
        result = table_rows(app, "#audit-result")
        box.value = "DELETE FROM runs"
        await pilot.press("enter")
        await settle(pilot)
        still = table_rows(app, "#audit-result")
        app.query_one("#audit-result", DataTable).focus()
        await pilot.press("f4")
        await settle(pilot)
        exported = text(app, "#audit-status")
        await pilot.press("f3")
        await settle(pilot)
        return result, still, exported, text(app, "#audit-status"), [n for n in app._notifications]
    result, still, exported, verified, notes = drive(ws_dir, steps)
    con = duckdb.connect(str(ws_dir / "audit.duckdb"), read_only=True)
    expected = con.execute("SELECT kind, count(*) FROM runs GROUP BY kind ORDER BY kind").fetchall()
    con.close()
    assert [(r[0], int(r[1])) for r in result] == expected
    assert still == result and any("refused: DELETE" in n.message for n in notes)
    path = Path(exported.removeprefix("wrote "))
    with path.open() as f:
        assert list(csv.reader(f)) == [["kind", "n"]] + [[k, str(n)] for k, n in expected]
    assert verified.startswith("audit verify: intact (") and "\n" not in verified  # no finding: not even an unclosed run


def test_ladder_tab_without_a_ladder_says_how_to_start(ws_dir: Path) -> None:
    async def steps(pilot, app):
        await pilot.press("7")
        await settle(pilot)
        return text(app, "#ladder-status")
    assert "no ladder job yet: s starts the quick profile" in drive(ws_dir, steps)


def test_ladder_tab_shows_the_plan_beside_what_each_rung_took(tmp_path: Path) -> None:
    """The plan the ladder recorded when it started (reuse or an estimate per rung) beside the rungs it finished,
    a rung the plan did not name (the probes' evaluations) in its place, and the next rung marked."""
    ws = open_workspace(tmp_path / "ws")
    plan = [{"rung": "ingest", "state": "reuse", "estimate_s": None}, {"rung": "gold", "state": "run", "estimate_s": 2.0},
            {"rung": "answers:m", "state": "run", "estimate_s": 400.0}, {"rung": "sdg", "state": "run",
                                                                         "estimate_s": None},
            {"rung": "train", "state": "run", "estimate_s": None}]
    with ws.run("ladder", "test: a ladder's plan and rungs") as run:
        run.event("ladder_plan", rungs=plan)
        for label, seconds, reused in (("ingest", 20.0, True), ("gold", 1.4, False), ("answers:m", 380.0, False),
                                       ("probe:base", 90.0, False)):
            run.event("ladder_rung_done", rung=label.split(":")[0], label=label, key=label, outputs={},
                      seconds=seconds, reused=reused)
        run.flush()
        rows = views.rungs(ws, run.run_id)      # while it runs
    assert [r["state"] for r in views.rungs(ws, run.run_id)][-2:] == ["not run", "not run"]    # once it ended
    assert [(r["label"], r["state"]) for r in rows] == [("ingest", "reused"), ("gold", "done"), ("answers:m", "done"),
                                                        ("probe:base", "done"), ("sdg", "next"), ("train", "waiting")]

    async def steps(pilot, app):
        await pilot.press("7")
        await settle(pilot)
        return table_rows(app, "#ladder-rungs")
    assert drive(tmp_path / "ws", steps, size=(100, 30)) == [
        ["ingest", "reuse", "20 s", "reused"], ["gold", "~2 s", "1 s", "done"], ["answers:m", "~6.7 min", "380 s", "done"],
        ["probe:base", "", "90 s", "done"], ["sdg", "", "", "not run"], ["train", "", "", "not run"]]


# --- jobs: real processes ---------------------------------------------------------------------------------------------

def wait_for(job_id: str, ws_dir: Path, states: tuple[str, ...], timeout: float = 300) -> jobs.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(open_workspace(ws_dir), job_id)
        if job.state in states:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not reach {states}: {job.state}; log: {job.log_tail(20)}")


def test_a_job_that_cannot_start_fails_with_its_message(workspace: Path) -> None:
    ws = open_workspace(workspace)
    job = jobs.start(ws, ["eval", "answers", "--questions", str(workspace / "missing.jsonl")])
    done = wait_for(job.job_id, workspace, ("done", "failed"), 120)
    assert done.state == "failed" and done.rc == 2
    assert any("no golden set" in line for line in done.log_tail())
    with pytest.raises(Exception, match="only a cancelled or killed job"):
        jobs.resume(ws, done)


def test_the_eval_tab_follows_the_eval_job_it_started(workspace: Path) -> None:
    """Enter starts `eval answers` as a job; the tab shows the job's state and what it said (a job that cannot
    start: its error is in its log, its state failed)."""
    open_workspace(workspace)

    async def steps(pilot, app):
        await pilot.press("4")
        await settle(pilot)
        box = app.query_one("#eval-questions", Input)
        box.value = str(workspace / "missing.jsonl")
        box.focus()
        await pilot.press("enter")
        await settle(pilot)
        for _ in range(600):
            if text(app, "#eval-job").startswith("eval job ") and ": failed" in text(app, "#eval-job"):
                break
            await pilot.pause(0.2)
        return text(app, "#eval-job")
    line = drive(workspace, steps)
    job = jobs.list_jobs(open_workspace(workspace))[0]
    assert job.command[:4] == ["eval", "answers", "--questions", str(workspace / "missing.jsonl")]
    assert line == f"eval job {job.job_id}: failed" and job.rc == 2


@pytest.mark.slow
def test_a_job_outlives_the_ui_is_reattached_cancelled_and_resumed(tmp_path: Path) -> None:
    """Ingest started from the Docs tab; the UI closed; reopened, the Jobs tab finds it; cancelled, it is resumable
    and resumes; the index ends with every file once and a corrupt file reported, and the chain verifies."""
    root = tmp_path / "ws"
    folder = tmp_path / "docs"
    shutil.copytree(SAMPLES / "corpus", folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    extra = []                      # enough files that the job is still running when it is cancelled
    for i in range(40):
        extra.append(f"note-{i:02d}.md")
        (folder / extra[-1]).write_text(f"# Note {i}\n\nStation {i} was serviced on day {i} by team {i % 7}; "
                                        f"its sensor reading was {i * 13} units.\n" * 3)

    async def start(pilot, app):
        await pilot.press("2")
        app.query_one("#docs-path", Input).value = str(folder)
        app.query_one("#docs-path", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
    drive(root, start)                                   # the UI is gone; the job is not
    job = jobs.list_jobs(open_workspace(root))[0]
    assert job.argv == ["ingest", str(folder)]

    async def reattach(pilot, app):
        await pilot.press("9")
        await settle(pilot)
        first = table_rows(app, "#jobs-table")
        while not [e for e in jobs.get(app.ws, job.job_id).events() if e.kind == "step"]:
            await pilot.pause(0.2)
        await pilot.press("c")                           # cancel the selected (only) job at its first file
        await settle(pilot)
        for _ in range(300):
            if jobs.get(app.ws, job.job_id).state != "running":
                break
            await pilot.pause(0.2)
        await pilot.pause(1.2)                           # the tab reloads every second
        await settle(pilot)
        after, stages = table_rows(app, "#jobs-table"), table_rows(app, "#jobs-stages")
        await pilot.press("2")
        await pilot.pause(2.2)                           # the Docs tab follows the ingest job too
        await settle(pilot)
        return first, text(app, "#docs-job"), after, stages
    first, docs_line, after, stages = drive(root, reattach)
    assert first[0][0] == job.job_id and first[0][1] in ("running", "done")
    assert docs_line.startswith(f"ingest job {job.job_id}: cancelled, ") and " files, last: " in docs_line
    cancelled = jobs.get(open_workspace(root), job.job_id)
    assert cancelled.state == "cancelled" and after[0][1] == "cancelled" and stages[0][0] == "ingest"

    async def resume(pilot, app):
        await pilot.press("9")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
    drive(root, resume)
    again = jobs.list_jobs(open_workspace(root))[0]
    assert again.resumes == job.job_id
    assert wait_for(again.job_id, root, ("done", "failed")).state == "done"
    docs = views.documents(open_workspace(root))
    indexed = sorted(Path(d["path"]).name for d in docs if d["status"] == "indexed")
    assert indexed == sorted(CORPUS_FILES + extra)
    skipped = [d for d in docs if d["status"] == "skipped"]
    assert [Path(d["path"]).name for d in skipped] == ["broken.pdf"] and skipped[0]["reason"]
    assert main(["--workspace", str(root), "audit", "verify"]) == 0


# --- snapshots at 80x24 and the app in tmux -----------------------------------------------------------------------

SNAPSHOT_WS = Path("/tmp/appliance-tui-snapshot-ws")      # fixed: the Home tab shows the workspace's path


@pytest.fixture
def empty_ws() -> Path:
    shutil.rmtree(SNAPSHOT_WS, ignore_errors=True)
    open_workspace(SNAPSHOT_WS)
    yield SNAPSHOT_WS
    shutil.rmtree(SNAPSHOT_WS, ignore_errors=True)


@pytest.mark.parametrize("key", list("123456789"))
def test_snapshot_80x24(empty_ws: Path, snap_compare, key: str) -> None:
    """Each tab as it stands once loaded. The key is pressed here, not by snap_compare, so that the tab's own load
    has finished; and cursors do not blink, or a slow machine catches an input's cursor off (CI did, twice)."""
    async def loaded(pilot) -> None:
        await settle(pilot)
        for box in pilot.app.query(Input):
            box.cursor_blink = False
        await pilot.press(key)
        await settle(pilot)
    assert snap_compare(ApplianceApp(open_workspace(empty_ws)), terminal_size=(80, 24), run_before=loaded)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("term, colours", [("xterm-256color", "auto"), ("xterm", "standard")])
def test_the_app_in_tmux_over_a_pseudo_terminal(ws_dir: Path, term: str, colours: str) -> None:
    """The app over a pseudo-terminal, keys sent and the screen read back: in a 256-colour terminal and in a
    16-colour one (which gets only the 16 standard colours, and the matrix still reads by its symbols)."""
    session = f"appliance-tui-test-{term}-{int(time.time())}"
    cmd = f"TERM={term} TEXTUAL_COLOR_SYSTEM={colours} {sys.executable} -m appliance.cli --workspace {ws_dir} tui"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def until(needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = screen()
            if needle in shown:
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{needle!r} never appeared:\n{screen()}")

    try:
        home = until("1 Home")
        assert "2 Docs" in home and "9 Jobs" in home
        until("indexed,")
        subprocess.run(["tmux", "send-keys", "-t", session, "8"], check=True)
        until("v_accuracy")
        subprocess.run(["tmux", "send-keys", "-t", session, "SELECT 'tmux' || 'ok' AS probe", "Enter"], check=True)
        until("tmuxok")
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        time.sleep(0.5)                                  # ESC and a key sent together read as alt+key
        subprocess.run(["tmux", "send-keys", "-t", session, "4"], check=True)
        shown = until("s07")
        assert ("✓" in shown or "✗" in shown or "⊘" in shown)
        if colours == "standard":                        # no 256-colour or true-colour escape in what was drawn
            raw = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", session], capture_output=True,
                                 text=True).stdout
            assert "\x1b[" in raw and not any(c in raw for c in ("38;5;", "38;2;", "48;5;", "48;2;"))
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and subprocess.run(["tmux", "has-session", "-t", session],
                                                             capture_output=True).returncode == 0:
            time.sleep(0.3)
        assert subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
