"""The ladder on the real stack with tiny inputs: planted scenarios reach their verdicts, every figure of the record
reads back from the audit store with its own SQL, a rerun reuses finished rungs, and a kill -9 in the middle of an
evaluation resumes without lost or duplicated rows. Answers come from tinycoder-random (fast, and unable to answer:
a model-side failure by construction); synthetic pairs from the scripted writer of tests/test_sdg.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from appliance import views
from appliance.audit import query
from appliance.cli import main
from appliance.models import REPO_ROOT
from appliance.workspace import open_workspace
from conftest import poll_store

SAMPLES = REPO_ROOT / "samples"
FAST = ["models.generator=tinycoder-random", "eval.judge_model=tinycoder-random", "llm.max_tokens=6",
        "llm.n_ctx=2048", "eval.samples=2", "ladder.strategies=best-of-n", "ladder.min_questions=3"]


def ladder(capsys, ws: Path, *args: str, overrides: list[str] = FAST) -> tuple[int, dict, str]:
    sets = [x for o in overrides for x in ("--set", o)]
    code = main(["--workspace", str(ws), *sets, "ladder", "--json", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def decide(capsys, ws: Path, overrides: list[str] = FAST) -> dict:
    sets = [x for o in overrides for x in ("--set", o)]
    assert main(["--workspace", str(ws), *sets, "decide", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(SAMPLES / "corpus", root)
    return root


def figures_read_back(ws: Path, record: dict) -> None:
    """Every figure of the record is what its own SQL returns from the store, and rests on runs that exist."""
    assert record["figures"]
    for f in record["figures"]:
        _, rows = query(ws / "audit.duckdb", f["sql"])
        got = rows[0][0] if rows else None
        if isinstance(got, float) or isinstance(f["value"], float):
            assert got is not None and abs(float(got) - f["value"]) < 1e-4, f
        else:
            assert got == f["value"], f
        _, runs = query(ws / "audit.duckdb", "SELECT run_id FROM runs")
        assert set(f["runs"]) <= {r for (r,) in runs}, f


def tui_shows_the_record(ws: Path, rec: dict) -> None:
    """The TUI's Ladder tab renders the newest record (its Markdown, in blocks) and Home names its verdict."""
    from textual.widgets import Markdown

    from tests.test_tui import drive, settle, text

    async def steps(pilot, app):
        home = text(app, "#home-summary")
        await pilot.press("7")
        await settle(pilot)
        md = app.query_one("#ladder-record", Markdown)
        return home, md.source, len(md.query("MarkdownBlock"))
    home, shown, blocks = drive(ws, steps, size=(100, 40))
    md_path = next(p for p in rec["paths"] if p.endswith(".md"))
    assert shown == Path(md_path).read_text(encoding="utf-8") and rec["verdict"] in shown and blocks > 10
    assert f"{rec['verdict']} (rule {rec['rule']}" in home


def test_planted_broken_retrieval_and_wrong_key(corpus, tmp_path, capsys) -> None:
    """Retrieval cut to one full-text hit must say `fix retrieval`; a wrong answer key is caught at the gold check."""
    ws = tmp_path / "ws"
    broken = FAST + ["retrieval.mode=fts", "retrieval.k=1", "retrieval.fts_weight=1", "ingest.section_prefix=false"]
    code, r, err = ladder(capsys, ws, "--docs", str(corpus), "--until", "retrieval", overrides=broken)
    assert code == 0, err
    assert r["rungs"]["retrieval"]["recall_at_k"] < 0.8
    rec = decide(capsys, ws, broken)
    assert (rec["verdict"], rec["locus"], rec["rule"]) == ("fix retrieval", "retrieval", "recall-below-min")
    _, rows = query(ws / "audit.duckdb", "SELECT ladder_run, run_id FROM v_decisions ORDER BY created_at DESC LIMIT 1")
    assert rows[0][0] == r["run_id"] != rows[0][1]  # the record names the ladder run it rests on, not only its own
    assert f"ladder run {r['run_id']}, rendered again by decide run {rows[0][1]}" in Path(rec["paths"][0]).read_text()
    figures_read_back(ws, rec)
    tui_shows_the_record(ws, rec)

    wrong = tmp_path / "wrong-key.jsonl"
    rows = [json.loads(x) for x in (SAMPLES / "questions.jsonl").read_text().splitlines() if x.strip()]
    rows[0]["answer"], rows[0]["aliases"] = "Nordic Skyways Travel Bureau", []
    wrong.write_text("".join(json.dumps(x) + "\n" for x in rows))
    code, r, err = ladder(capsys, ws, "--docs", str(corpus), "--questions", str(wrong), "--until", "gold")
    assert code == 0, err
    assert r["rungs"]["gold"]["flagged"] >= 1
    rec = decide(capsys, ws)
    assert (rec["verdict"], rec["rule"]) == ("fix the documents or the answer key", "gold-key-flagged")
    assert rows[0]["id"] in rec["because"]


@pytest.mark.slow
def test_the_whole_ladder_on_tiny_inputs_ends_in_a_record_that_reads_back(corpus, tmp_path, capsys) -> None:
    """Every rung, then the record: a model that cannot answer gets a model-side verdict; fine-tuning is not
    recommended on unreviewed pairs; every figure reads back; a rerun reuses every rung; audit verify is clean."""
    from appliance.ladder.job import Ladder, default_plan
    from appliance.progress import Progress
    from tests.test_sdg import scripted_writer

    ws_dir = tmp_path / "ws"
    settings = FAST + ["sdg.target_pairs=12", "sdg.probe_questions=4", "train.max_steps=2", "train.eval_examples=2",
                       "train.grad_accumulation=1", "train.evals_per_epoch=100"]
    ws = open_workspace(ws_dir, settings)
    plan = default_plan(ws, corpus, None, None, None, [])
    first = Ladder(ws, plan, Progress(), "test", writer=scripted_writer()).ladder()
    rec = first["record"]
    assert set(first["rungs"]) >= {"ingest", "gold", "retrieval", "answers:tinycoder-random", "scaling:best-of-n",
                                   "sdg", "dataset", "probe", "train", "export", "adapted", "compare"}
    assert rec["locus"] == "model" and rec["verdict"] != "fine-tune"
    assert not first["rungs"]["dataset"]["reviewed_only"]
    for path in rec["paths"]:
        text = Path(path).read_text()
        assert rec["verdict"] in text and "SELECT" in text
    assert "<svg" in Path(rec["paths"][1]).read_text()   # the plots are inline
    figures_read_back(ws_dir, rec)
    value = {f["key"]: f["value"] for f in rec["figures"]}
    primary = "tinycoder-random"        # the questions split by whether their evidence was trained on, every one once
    assert value["split.seen.n"] + value["split.unseen.n"] == value[f"{primary}.rag.answerable"]
    _, cards = query(ws_dir / "audit.duckdb", "SELECT card_json FROM datasets WHERE dataset_id = '"
                     + first["rungs"]["dataset"]["dataset_id"] + "'")
    seen = set(json.loads(cards[0][0])["golden_overlap"]["evidence_seen_in_training"])
    _, answerable = query(ws_dir / "audit.duckdb", "SELECT question_id FROM judgements WHERE condition = 'rag' AND "
                          f"kind <> 'unanswerable' AND run_id = '{first['rungs'][f'answers:{primary}']['run_id']}'")
    assert value["split.seen.n"] == len({q for (q,) in answerable} & seen)
    assert "by whether their gold evidence was among the training sources" in Path(rec["paths"][0]).read_text()
    assert value["crosscheck.n"] == first["rungs"]["crosscheck"]["asked"] > 0     # the judge layers' agreement
    rungs = first["rungs"]    # the probe at each strength chooses the one the golden set is asked at
    right = {s: rungs[label]["accuracy"]["rag"] for s, label in ((1.0, "probe:adapted"), (0.5, "probe:adapted@0.5"))}
    assert rungs["probe"]["path"] and "probe:base" in rungs and value["probe-adapted@0.5.rag.n"] > 0
    chosen = 1.0 if right[1.0] >= right[0.5] else 0.5
    assert rungs["adapted"]["scale"] == chosen
    assert rungs["adapted"]["probe_right"] == {f"{s:g}": v for s, v in right.items()}
    _, used = query(ws_dir / "audit.duckdb", f"SELECT DISTINCT adapter_id FROM answers WHERE run_id = "
                    f"'{rungs['adapted']['run_id']}'")
    assert used == [(rungs["train"]["adapter"] + ("@0.5" if chosen == 0.5 else ""),)]
    assert "probe questions right x1:" in Path(rec["paths"][0]).read_text()
    assert value["crosscheck.agreement"] == first["rungs"]["crosscheck"]["agreement"]

    t0 = time.perf_counter()
    ladder = Ladder(open_workspace(ws_dir, settings), plan, Progress(), "test", writer=scripted_writer())
    planned = ladder.preview()
    again = ladder.ladder()
    assert again["rungs"] == first["rungs"] and again["record"]["verdict"] == rec["verdict"]
    assert all(r["state"] == "reuse" for r in planned if r["key"])     # the rungs keyed before it starts
    shown = views.rungs(open_workspace(ws_dir), again["run_id"])     # the plan recorded, beside what each rung took
    assert {r["label"] for r in shown} == set(again["rungs"]) | {r["rung"] for r in planned}
    assert {r["state"] for r in shown} == {"reused", "done"}
    con = duckdb.connect(str(ws_dir / "audit.duckdb"), read_only=True)
    reused = con.execute("SELECT count(*) FILTER (WHERE CAST(json_extract(payload_json, '$.reused') AS BOOLEAN)), "
                         "count(*) FROM events WHERE run_id = ? AND kind = 'ladder_rung_done'",
                         [again["run_id"]]).fetchone()
    con.close()
    assert reused[0] == reused[1] > 10, f"rerun took {time.perf_counter() - t0:.0f} s"
    assert main(["--workspace", str(ws_dir), "audit", "verify"]) == 0


CHILD = """
import sys
sys.path.insert(0, {repo!r})
from appliance.cli import main
sys.exit(main(["--workspace", {ws!r}] + {sets!r} + ["ladder", "--docs", {docs!r}, "--until", "answers", "--json"]))
"""


def test_a_ladder_killed_during_an_evaluation_resumes_it(corpus, tmp_path, capsys) -> None:
    """kill -9 while the answers rung runs: the rerun resumes that evaluation run (one verdict per question and
    condition, none lost) and closes the killed ladder run, so audit verify is clean."""
    ws = tmp_path / "ws"
    sets = [x for o in FAST for x in ("--set", o)]
    child = CHILD.format(repo=str(REPO_ROOT), ws=str(ws), sets=sets, docs=str(corpus))
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    eval_run = poll_store(ws, "SELECT j.run_id FROM judgements j JOIN runs r USING (run_id) WHERE r.kind = "
                              "'eval-answers' GROUP BY j.run_id HAVING count(*) >= 9", proc)
    assert eval_run is not None and proc.poll() is None, "the ladder finished or never answered"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    code, r, err = ladder(capsys, ws, "--docs", str(corpus), "--until", "answers")
    assert code == 0, err
    plan = {row["rung"]: row for row in r["plan"]}
    assert plan["ingest"]["state"] == "reuse" and plan["answers:tinycoder-random"]["state"] == "run"
    assert plan["answers:tinycoder-random"]["estimate_s"] > 0 and "measured now" in plan["answers:tinycoder-random"]["basis"]
    assert r["rungs"]["answers:tinycoder-random"]["run_id"] == eval_run
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    counts = con.execute("SELECT question_id, condition, count(*) FROM judgements WHERE run_id = ? "
                         "GROUP BY ALL", [eval_run]).fetchall()
    con.close()
    assert len(counts) == 30 * 3 and {n for _, _, n in counts} == {1}
    assert main(["--workspace", str(ws), "audit", "verify"]) == 0


def test_a_dataset_without_validation_examples_is_not_trained_and_says_why(tmp_path, monkeypatch) -> None:
    """Training stops on validation loss and refuses such a dataset; the ladder skips training with the reason
    (which the record prints) instead of failing there."""
    import appliance.sdg.dataset as dataset
    from appliance.ladder.job import Ladder, Plan
    from appliance.progress import Progress

    card = {"run_id": "r1", "dataset_id": "d1", "examples": 12, "reviewed_only": False, "by_split": {"train": 12}}
    monkeypatch.setattr(dataset, "build_dataset", lambda ws, **kw: card)
    ws = open_workspace(tmp_path / "ws")
    lad = Ladder(ws, Plan(SAMPLES / "corpus", SAMPLES / "questions.jsonl", ["tinycoder-random"]), Progress(), "")
    made = lad._dataset(reviewed=0)
    assert made["dataset_id"] == "d1" and "no validation examples" in made["reason"]
    card["by_split"]["validation"] = 3
    assert "reason" not in lad._dataset(reviewed=0)
