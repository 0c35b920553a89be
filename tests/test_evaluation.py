"""Answer evaluation: judges, attribution, statistics, strategies and gold checks (pure functions), then the real
stack end to end on the sample corpus with the small test model."""
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from appliance.cli import main
from appliance.errors import Cancelled, UsageError
from appliance.evaluation.answers import evaluate_answers
from appliance.resume import config_differences
from appliance.evaluation.rejudge import rejudge_run
from appliance.llm.fake import FakeGenerator
from appliance.progress import Progress, ProgressEvent
from appliance.workspace import open_workspace
from appliance.evaluation.attribution import failure_kind
from appliance.evaluation.golden import Question
from appliance.evaluation.goldcheck import deterministic_checks, flags
from appliance.evaluation.judge import Verdict, deterministic, parse_judgement
from appliance.text import numbers
from appliance.evaluation.stats import bootstrap_diff, mcnemar_exact, paired_test
from appliance.evaluation.strategies import answer_key, groundedness
from appliance.models import REPO_ROOT

from conftest import TEST_MODEL

SAMPLES = REPO_ROOT / "samples"


def q(answer: str, aliases=(), kind: str = "fact", evidence=("e",)) -> Question:
    return Question(id="t1", question="?", answer=answer, aliases=tuple(aliases), source_files=(),
                    evidence=tuple(evidence) if answer != "UNANSWERABLE" else (), kind=kind)


@pytest.mark.parametrize("gold,aliases,answer,verdict,method", [
    ("UNANSWERABLE", (), "I don't know.", "correct", "refusal"),
    ("UNANSWERABLE", (), "It is 42.", "incorrect", "refusal"),
    ("90 days", (), "The passages do not say.", "incorrect", "refusal"),
    ("90 days", (), "90 days", "correct", "exact"),
    ("Arctic Travel Partner AS", ("Arctic Travel Partner",), "arctic travel partner", "correct", "alias"),
    ("90 days", (), "Backups are kept for 90 days.", "correct", "number"),
    ("90 days", (), "They are kept for 25 days.", "incorrect", "number"),
    ("NOK 4,900", (), "It costs 4900 NOK per year.", "correct", "number"),
    ("Modbus RTU", (), "The WS-400 uses Modbus RTU on RS-485.", "correct", "contains"),
    ("The secondary on-call engineer", ("secondary on-call",), "The Platform Lead, Sofie.", "incorrect", "overlap"),
    ("Hand it to the Service Desk unopened", (), "Employees must hand the stick to the service desk unopened.",
     "correct", "overlap"),
    # a dotted name is one answer: "datetime.date" does not contain "datetime", nor "shelve.X" "X"
    ("datetime.datetime (with tzinfo set to None)", ("datetime.datetime", "datetime"), "It becomes a datetime.date.",
     "incorrect", "overlap"),
    ("pickle.DEFAULT_PROTOCOL", ("DEFAULT_PROTOCOL",), "shelve.DEFAULT_PROTOCOL is now used.", "incorrect", "overlap"),
    ("pickle.DEFAULT_PROTOCOL", ("DEFAULT_PROTOCOL",), "Since 3.10 it is pickle.DEFAULT_PROTOCOL.", "correct",
     "contains"),
])
def test_deterministic_checks_settle_what_they_can(gold, aliases, answer, verdict, method) -> None:
    v = deterministic(q(gold, aliases, "unanswerable" if gold == "UNANSWERABLE" else "fact"), answer)
    assert v is not None and (v.verdict, v.method) == (verdict, method)


def test_an_answer_that_only_restates_the_question_is_incorrect() -> None:
    echo = Question(id="t1", question="Which agency books flights for business trips?", answer="Arctic Travel Partner AS, through its online booking portal or its phone service",
                    aliases=(), source_files=(), evidence=("e",), kind="fact")   # a long answer: no overlap rule
    v = deterministic(echo, "The agency that books flights for business trips.")
    assert v is not None and (v.verdict, v.method) == ("incorrect", "echo")
    assert deterministic(echo, "The agency Nordreise books flights.") is None   # says something new: the judge decides


def test_what_checks_cannot_settle_goes_to_the_judge() -> None:
    assert deterministic(q("Steady green, after flashing for 30 s"), "It shows a green light once started.") is None


def test_numbers_are_compared_in_one_form() -> None:
    from appliance.text import claim_numbers

    assert numbers("NOK 4,900 and 4900.00, 2.50 V") == {"4900", "2.5 v"}
    assert numbers("Roll 2d6, then 1d20.") == {"2d6", "1d20"}  # a dice expression is one number, not its count
    assert claim_numbers("rolls 2d6 (see page 12), the 3rd time 90 days") == {"2d6", "3", "90"}
    v = deterministic(q("1d6"), "They roll 1d8 for hit points.")
    assert v is not None and v.verdict == "incorrect"


def test_unparseable_judge_output_is_a_verdict_not_a_gap() -> None:
    assert parse_judgement('{"reason": "same", "verdict": "correct"}') == ("correct", "same")
    assert parse_judgement('{"reason": "cut off')[0] == "unparseable"
    assert parse_judgement('{"verdict": "maybe"}')[0] == "unparseable"


@pytest.mark.parametrize("condition,answerable,verdict,refused,in_ctx,oracle,kind", [
    ("rag", True, "correct", False, True, True, "correct"),
    ("rag", False, "incorrect", False, None, None, "hallucinated_answer"),
    ("rag", True, "incorrect", True, False, True, "retrieval_miss"),
    ("rag", True, "incorrect", True, True, True, "wrong_refusal"),
    ("rag", True, "incorrect", False, True, True, "context_misuse"),
    ("rag", True, "incorrect", False, True, False, "model_limit"),
    ("rag", True, "incorrect", False, True, None, "unattributed"),   # no oracle run: not guessed
    ("oracle", True, "incorrect", False, True, None, "model_limit"),
    ("closed-book", True, "incorrect", False, None, None, "model_limit"),
    ("rag", True, "unparseable", False, True, True, "unjudged"),
])
def test_failure_attribution(condition, answerable, verdict, refused, in_ctx, oracle, kind) -> None:
    v = Verdict(verdict, "judge", "", refused)
    assert failure_kind(condition, answerable, v, in_ctx, oracle) == kind


def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_paired_test_claims_a_difference_only_with_evidence() -> None:
    a = [False] * 30 + [True] * 10
    b = [True] * 30 + [True] * 10
    t = paired_test(a, b, resamples=2000, alpha=0.05)
    assert (t.n, t.accuracy_a, t.accuracy_b, t.a_only, t.b_only) == (40, 10 / 40, 1.0, 0, 30)
    assert t.p_value == pytest.approx(2 * 0.5 ** 30, rel=1e-3)  # McNemar exact: 30 discordant pairs, all one way
    assert t.verdict == "B better" and 0 < t.ci_low <= 0.75 <= t.ci_high  # the interval holds the observed +0.75
    t = paired_test([True, False, True, False], [False, True, True, False], resamples=2000, alpha=0.05)
    assert (t.a_only, t.b_only, t.p_value) == (1, 1, 1.0)
    assert t.verdict == "insufficient evidence" and t.ci_low < 0 < t.ci_high
    lo, hi = bootstrap_diff(a, a, 500)
    assert lo == hi == 0.0


def test_voting_key_and_groundedness() -> None:
    assert answer_key("90 days. They are kept on bkp01.") == answer_key("90 Days")
    assert answer_key("I don't know.") == answer_key("The passages do not say.")
    ctx = "Full backups are kept for 90 days on bkp01."
    assert groundedness("Kept for 90 days on bkp01.", ctx) > groundedness("Kept for a year on tape.", ctx)
    assert groundedness("I don't know", ctx) == 0.5


PASSAGES = ("Elves never roll larger than six-sided dice (d6) for hit points. The player rolls 1d20 and tells the GM "
            "the result. If the table gives a number, that is the minimum number needed on 1d20 to Turn that type of "
            "undead. Fighter/Magic-User: these characters may cast magic spells while wearing armor.")


@pytest.mark.parametrize("answer,check", [
    ("Elves roll a d6 for hit points because they are a combination class of elven warriors.", "reason"),
    ("The Cleric rolls 2d6 and compares the result to the Turn undead table.", "numbers"),
    ("A Fighter/Magic-User cannot cast magic spells while wearing armor.", "polarity"),
    ("Elves roll d6 for hit points, and they gain spells from the moon goddess at midnight festivals.", "not_stated"),
])
def test_gold_checks_flag_unsupported_keys(answer, check) -> None:
    found = deterministic_checks(q(answer), answer, PASSAGES, "", [])
    assert check in [f["check"] for f in found], found


def test_the_polarity_check_reads_a_table_row_cell_by_cell() -> None:
    """A negation in one cell of a row does not contradict a clause that another cell of the row states."""
    row = "Code\tCause\tAction\nE08\tNo heater supply on pins 6 and 7\tCheck the 24 V heater supply and fuse"
    right = "The heater fails: check the 24 V heater supply and fuse"
    wrong = "The heater fails: do not check the 24 V heater supply and fuse"
    assert "polarity" not in [f["check"] for f in deterministic_checks(q(right), right, row, "", [])]
    assert "polarity" in [f["check"] for f in deterministic_checks(q(wrong), wrong, row, "", [])]


def test_gold_checks_pass_a_supported_key() -> None:
    answer = "The player rolls 1d20; the table gives the minimum number needed to Turn that type of undead."
    assert deterministic_checks(q(answer), answer, PASSAGES, "", []) == []
    assert deterministic_checks(q("1d20"), "1d20", PASSAGES, "", []) == []


def test_rag_context_keeps_the_best_within_budget_and_shows_it_last() -> None:
    from types import SimpleNamespace

    from appliance.answering import retrieved_context

    hits = [SimpleNamespace(chunk_id=f"c{i}", text=f"passage {i} " + "word " * 40, file_name="f.md", section="",
                            page_start=None, rank=i, score=1 / i) for i in (1, 2, 3)]
    result = SimpleNamespace(hits=hits)
    count = lambda text: len(text.split())  # noqa: E731 - one word, one token
    first = retrieved_context(result, 120, count)
    assert [p.chunk_id for p in first.passages] == ["c1", "c2"] and first.dropped == 1  # the lowest rank is cut
    last = retrieved_context(result, 120, count, order="best-last")
    assert [p.chunk_id for p in last.passages] == ["c2", "c1"]
    assert last.render().rstrip().endswith("word") and last.render().index("passage 1") > last.render().index("passage 2")


def test_table_rows_are_shown_to_the_model_as_fields_under_their_header() -> None:
    from appliance.answering import Context, Passage

    text = ("The full list of options:\nName\tDescription\tDefault\nInclude_debug\tInstall debug binaries\t0\n"
            "Include_symbols\tInstall debugging symbols (*.pdb)\t\nAfter the table, prose.")
    shown = Context("rag", [Passage("c1", text, "setup.pdf", "Options", 3)]).render()
    assert shown.splitlines()[1:] == [
        "The full list of options:", "Name\tDescription\tDefault",
        "Name: Include_debug; Description: Install debug binaries; Default: 0",
        "Name: Include_symbols; Description: Install debugging symbols (*.pdb)",   # an empty cell is left out
        "After the table, prose."]
    prose = "No table here.\n\nA second paragraph."
    assert Context("rag", [Passage("c2", prose, "a.md", "", None)]).render().endswith(prose)


# --- the real stack: ingest the samples, evaluate a few questions with the small model ---------------------------

@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalws") / "ws"
    corpus = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(SAMPLES / "corpus", corpus)
    assert main(["--workspace", str(root), "--set", f"eval.judge_model={TEST_MODEL}", "init"]) == 0
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    return root


def run(capsys, ws: Path, *args: str):
    code = main(["--workspace", str(ws), *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and out.strip() else out), err


def small_set(tmp_path: Path, ids: list[str], change: dict[str, str] | None = None) -> Path:
    rows = [json.loads(line) for line in (SAMPLES / "questions.jsonl").read_text().splitlines() if line.strip()]
    rows = [r | ({"answer": change[r["id"]], "aliases": []} if change and r["id"] in change else {})
            for r in rows if r["id"] in ids]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_answers_all_conditions_recorded_and_compared(ws, capsys, tmp_path: Path) -> None:
    qs = small_set(tmp_path, ["s07", "s12", "s28"])  # fact, table, unanswerable
    code, single, err = run(capsys, ws, "eval", "answers", "--questions", str(qs), "--model", TEST_MODEL, "--json")
    assert code == 0, err
    assert set(single["conditions"]) == {"closed-book", "oracle", "rag"} and err == ""  # --json: nothing else
    assert single["estimated_seconds"] > 0  # estimated before the run, from speed now
    for name, cond in single["conditions"].items():
        mine = [o for o in single["questions"] if o["condition"] == name]
        correct = sum(o["verdict"] == "correct" for o in mine)
        refused = sum(o["verdict"] == "correct" for o in mine if o["id"] == "s28")  # a refusal is its right answer
        assert cond["n"] == 3 and cond["accuracy"] == round(correct / 3, 4) and cond["correct"] == correct
        assert cond["unanswerable_refused"] == f"{refused}/1"
    assert len(single["questions"]) == 9 and all(o["failure_kind"] for o in single["questions"])
    assert next(o for o in single["questions"] if o["condition"] == "oracle" and o["id"] == "s12")[
        "evidence_in_context"] is True
    for report in single["reports"]:
        assert Path(report).is_file()
    assert "<svg" in Path(next(r for r in single["reports"] if r.endswith(".html"))).read_text()

    council = evaluate_answers(open_workspace(ws), qs, conditions="rag", strategy="council",  # logic: scripted
                               generator=FakeGenerator(lambda *_: "I don't know"),
                               judge_generator=FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT))
    code, cmp, err = run(capsys, ws, "compare", single["run_id"], council["run_id"], "--json")
    assert code == 0, err
    assert list(cmp["conditions"]) == ["rag"] and cmp["conditions"]["rag"]["n"] == 3
    assert cmp["conditions"]["rag"]["verdict"] == "insufficient evidence"  # 3 pairs can never reach p < 0.05

    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    steps = con.execute("SELECT strategy, count(*) FROM answers WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                        [council["run_id"]]).fetchall()
    judged = con.execute("SELECT count(*), count(DISTINCT answer_row_hash) FROM judgements WHERE run_id = ?",
                         [single["run_id"]]).fetchall()
    compared = con.execute("SELECT count(*) FROM v_comparisons WHERE run_a = ?", [single["run_id"]]).fetchall()
    con.close()
    assert dict(steps) == {"council": 3, "council/analyst": 3, "council/contrarian": 3, "council/explorer": 3,
                           "council/reasoner": 3, "council/synthesis": 3}
    assert judged == [(9, 9)] and compared == [(1,)]
    code, verify, _ = run(capsys, ws, "audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["findings"] == []


def test_ask_from_the_documents_cites_its_passages(ws, capsys) -> None:
    code, out, err = run(capsys, ws, "ask", "What colour is the visitor badge?", "--model", TEST_MODEL, "--json")
    assert code == 0, err
    assert out["condition"] == "rag" and out["sources"] and out["template_id"] == "context/v1"
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    prompt, retrieved = con.execute("SELECT prompt, retrieved_json FROM answers WHERE run_id = ?",
                                    [out["run_id"]]).fetchone()
    hits = json.loads(con.execute("SELECT hits_json FROM retrievals WHERE run_id = ?", [out["run_id"]]).fetchone()[0])
    con.close()
    cited = [s["chunk_id"] for s in out["sources"]]
    assert cited == [r["chunk_id"] for r in sorted(json.loads(retrieved), key=lambda r: r["rank"])]  # what it saw
    assert set(cited) <= {h["chunk_id"] for h in hits}  # from this question's own retrieval
    assert all(s["file"] in prompt for s in out["sources"])  # and each was in the prompt, named


def test_gold_check_flags_a_wrong_key_and_passes_the_right_one(ws, capsys, tmp_path: Path) -> None:
    code, ok, _ = run(capsys, ws, "gold", "check", "--questions", str(small_set(tmp_path, ["s12", "s16"])),
                      "--json")
    assert code == 0 and ok["flagged"] == 0
    wrong = small_set(tmp_path, ["s12", "s16"], {"s12": "60 days"})
    code, bad, _ = run(capsys, ws, "gold", "check", "--questions", str(wrong), "--json")
    assert code == 1 and bad["flagged_ids"] == ["s12"]
    assert "60 days" in bad["findings"][0]["reason"] and bad["findings"][0]["passage"]


def test_gold_checks_do_not_flag_absence_claims_or_a_summary_of_other_passages() -> None:
    """A key may say the source is silent (words cannot check that: listed as unchecked), or state what another
    sentence of its source says beyond its quoted evidence (a warning naming that sentence); neither flags it, and
    the same clause with nothing behind it anywhere still does."""
    silent = "The rules give no reason. Elves never roll larger than six-sided dice (d6) for hit points."
    found = deterministic_checks(q(silent), silent, PASSAGES, "", [])
    assert flags(found) == [] and [f["check"] for f in found] == ["absence_claim"]
    more = "Elves never roll larger than d6 for hit points, and mercenaries are hired troops who never enter dungeons."
    source = "Mercenaries will virtually never go into a dungeon, lair, or ruin, at least until it has been cleared."
    found = deterministic_checks(q(more), more, PASSAGES, "", [], source)
    assert flags(found) == [] and found[0]["check"] == "evidence_incomplete" and found[0]["passage"] == source
    assert [f["check"] for f in flags(deterministic_checks(q(more), more, PASSAGES, "", []))] == ["not_stated"]
    for elsewhere in ("Specialists are never paid in gold.",    # too little of the clause
                      "Mercenaries are hired troops who will enter dungeons, lairs and ruins."):   # the opposite
        assert [f["check"] for f in flags(deterministic_checks(q(more), more, PASSAGES, "", [], elsewhere))] == [
            "not_stated"], elsewhere
    invented = "Elves never roll larger than d6 for hit points, and tenants may not record meetings in the hall."
    assert [f["check"] for f in flags(deterministic_checks(q(invented), invented, PASSAGES, "", []))] == [
        "not_stated"]                                          # not a claim about the source: still checked


def test_unknown_condition_and_strategy_are_refused(ws, capsys) -> None:
    code, _, err = run(capsys, ws, "eval", "answers", "--questions", str(SAMPLES / "questions.jsonl"),
                       "--conditions", "rag,open-book", "--model", TEST_MODEL)
    assert code == 2 and "open-book" in err


def test_a_killed_eval_run_resumes_where_it_stopped(ws, capsys, tmp_path: Path) -> None:
    qs = small_set(tmp_path, ["s07", "s12", "s28"])
    # the child kills itself (SIGKILL: no clean-up, no run_end) on the event "question 1 done", which comes after
    # that question's transaction: no race with how fast it answers
    child = ("import os, signal, sys\n"
             "from appliance.progress import Progress\n"
             "from appliance.cli import main\n"
             "advance = Progress.advance\n"
             "def then_die(self, stage, done, *rest, **kw):\n"
             "    advance(self, stage, done, *rest, **kw)\n"
             "    if done == 1:\n"
             "        os.kill(os.getpid(), signal.SIGKILL)\n"
             "Progress.advance = then_die\n"
             "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", child, "--workspace", str(ws), "eval", "answers", "--questions",
                             str(qs), "--conditions", "closed-book", "--model", TEST_MODEL],
                            stderr=subprocess.PIPE, text=True)
    lines = proc.stderr.read().splitlines()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert any(line.startswith("estimate: 3 answers") for line in lines)  # said before the first answer
    assert lines[-1].startswith("[1/3]") and "about" in lines[-1]  # plain progress lines with the time left
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    killed = con.execute("SELECT run_id FROM v_runs WHERE kind = 'eval-answers' AND status IS NULL").fetchall()
    con.close()
    assert len(killed) == 1
    run_id = killed[0][0]
    code, again, err = run(capsys, ws, "eval", "answers", "--resume", run_id[:8], "--json")
    assert code == 0, err
    assert again["run_id"] == run_id and again["resumed"]
    assert [o["id"] for o in again["questions"]] == ["s07", "s12", "s28"]
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    per_question = con.execute("SELECT question_id, count(*) FROM answers WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                               [run_id]).fetchall()
    con.close()
    assert per_question == [("s07", 1), ("s12", 1), ("s28", 1)]  # nothing answered twice, nothing lost
    code, verify, _ = run(capsys, ws, "audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["findings"] == []
    code, _, err = run(capsys, ws, "eval", "answers", "--resume", run_id)
    assert code == 2 and "finished" in err


# --- logic on the real index with scripted models (no GGUF loaded) -----------------------------------------------

JUDGE_SAYS_INCORRECT = '{"reason": "different colour", "verdict": "incorrect"}'
# per question: the answer under closed-book, oracle, rag
SCRIPT = {"s07": ("I don't know.", "Red", "The badge is crimson."),    # crimson: the deterministic layer cannot settle
          "s12": ("90 days", "90 days", "I don't know."),
          "s28": ("About 10 years.", "I don't know.", "It is 42,000 hours.")}


def scripted_model(questions: dict[str, str]) -> FakeGenerator:
    """Answers by question and condition, recognised from the prompt as a model would see it: no passages
    (closed-book), one numbered passage or none (oracle), three (rag, eval.context_k); anything else (the
    estimate's speed probe) gets a filler."""
    def script(prompt: str, params, schema) -> str:
        qid = next((i for i, text in questions.items() if text in prompt), None)
        if qid is None or ("Passages:" in prompt and "[1] (" not in prompt and "(no passages)" not in prompt):
            return "filler"
        cond = 0 if "Passages:" not in prompt else (2 if "[3] (" in prompt else 1)
        return SCRIPT[qid][cond]
    return FakeGenerator(script, name="scripted", sha256="a" * 64, adapter="adapter-1", adapter_sha256="b" * 64)


def question_texts(path: Path) -> dict[str, str]:
    return {r["id"]: r["question"] for r in map(json.loads, path.read_text().splitlines())}


def test_eval_answers_logic_with_scripted_models(ws, tmp_path: Path) -> None:
    qs = small_set(tmp_path, ["s07", "s12", "s28"])
    judge = FakeGenerator(lambda prompt, params, schema: JUDGE_SAYS_INCORRECT, name="scripted-judge")
    events: list[ProgressEvent] = []
    summary = evaluate_answers(open_workspace(ws), qs, generator=scripted_model(question_texts(qs)),
                               judge_generator=judge, progress=Progress(events.append))
    got = {(o["id"], o["condition"]): o for o in summary["questions"]}
    assert got["s07", "closed-book"]["failure_kind"] == "wrong_refusal"
    assert got["s07", "oracle"]["verdict"] == "correct" and got["s07", "oracle"]["evidence_in_context"] is True
    s07 = got["s07", "rag"]  # the judge model settled it; wrong with the evidence shown -> the model misread it
    assert (s07["verdict"], s07["method"]) == ("incorrect", "judge")
    assert s07["failure_kind"] == ("context_misuse" if s07["evidence_in_context"] else "retrieval_miss")
    s12 = got["s12", "rag"]
    assert s12["failure_kind"] == ("wrong_refusal" if s12["evidence_in_context"] else "retrieval_miss")
    assert [got["s28", c]["failure_kind"] for c in ("closed-book", "oracle", "rag")] == [
        "hallucinated_answer", "correct", "hallucinated_answer"]
    assert summary["conditions"]["oracle"]["accuracy"] == 1.0
    assert summary["conditions"]["closed-book"]["correct"] == 1 and summary["conditions"]["rag"]["correct"] == 0
    steps = [(e.kind, e.done, e.total, e.unit) for e in events if e.kind != "note"]
    assert steps == [("start", 0, 3, "questions")] + [("step", i, 3, "questions") for i in (1, 2, 3)]
    assert any(e.kind == "note" and e.message.startswith("estimate:") for e in events)
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT model_name, model_sha256, adapter_id, adapter_sha256 FROM answers WHERE run_id = ?",
                       [summary["run_id"]]).fetchall()
    judged = con.execute("SELECT judge_model FROM judgements WHERE run_id = ? AND method = 'judge'",
                         [summary["run_id"]]).fetchall()
    retrievals = con.execute("SELECT count(*) FROM retrievals WHERE run_id = ?", [summary["run_id"]]).fetchall()
    con.close()
    assert set(rows) == {("scripted", "a" * 64, "adapter-1", "b" * 64)} and len(rows) == 9
    assert judged == [("scripted-judge",)] and retrievals == [(3,)]


def test_rejudge_points_at_the_old_answers_and_uses_the_new_key(ws, capsys, tmp_path: Path) -> None:
    from appliance.evaluation.judge import is_refusal

    qs = small_set(tmp_path, ["s12", "s28"])
    workspace = open_workspace(ws)
    judge = FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT, name="scripted-judge")
    first = evaluate_answers(workspace, qs, conditions="closed-book,oracle",
                             generator=scripted_model(question_texts(qs)), judge_generator=judge)
    again = rejudge_run(workspace, first["run_id"][:10], judge_generator=judge)
    verdicts = lambda s: {(o["id"], o["condition"]): o["verdict"] for o in s["questions"]}  # noqa: E731
    assert again["rejudged"] == first["run_id"] and verdicts(again) == verdicts(first)
    walls = lambda s: {(o["id"], o["condition"]): o["wall_ms"] for o in s["questions"]}  # noqa: E731
    assert walls(again) == walls(first)  # the source run's wall time, not its generation latency
    report = Path(next(r for r in again["reports"] if r.endswith(".md"))).read_text()
    assert f"re-judgement of run {first['run_id']}" in report
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    pointed = con.execute("SELECT DISTINCT a.run_id FROM judgements j JOIN answers a ON a.row_hash = j.answer_row_hash "
                          "WHERE j.run_id = ?", [again["run_id"]]).fetchall()
    con.close()
    assert pointed == [(first["run_id"],)]  # nothing generated: the old answers, judged again
    rows = [json.loads(line) for line in qs.read_text().splitlines()]
    changed = tmp_path / "changed.jsonl"  # the key corrected after the run: s12 is now unanswerable
    changed.write_text("\n".join(json.dumps(r | ({"answer": "UNANSWERABLE", "aliases": [], "evidence": [],
                                                  "kind": "unanswerable"} if r["id"] == "s12" else {}))
                                  for r in rows) + "\n")
    notes: list[ProgressEvent] = []
    new_key = rejudge_run(workspace, first["run_id"], changed, judge_generator=judge, progress=Progress(notes.append))
    assert any("differs" in e.message for e in notes)
    for o in new_key["questions"]:
        if o["id"] == "s12":  # now judged as unanswerable: right exactly when the stored answer refused
            assert o["verdict"] == ("correct" if is_refusal(o["answer"]) else "incorrect")
    code, verify, _ = run(capsys, ws, "audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["findings"] == []


def test_crosscheck_asks_the_judge_about_what_the_checks_settled(ws, capsys, tmp_path: Path) -> None:
    """Only check-settled answers go to the judge model (not its own verdicts, not refusals); both verdicts of each
    are recorded in a run of their own, and the agreement is what they say."""
    from appliance.evaluation.crosscheck import crosscheck_run

    qs = small_set(tmp_path, ["s07", "s12", "s28"])
    workspace = open_workspace(ws)
    first = evaluate_answers(workspace, qs, generator=scripted_model(question_texts(qs)),
                             judge_generator=FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT, name="scripted-judge"))
    settled = {(o["id"], o["condition"]): (o["method"], o["verdict"]) for o in first["questions"]}
    asked = sorted(k for k, (m, _) in settled.items() if m not in ("judge", "refusal"))
    assert asked == [("s07", "oracle"), ("s12", "closed-book"), ("s12", "oracle")]    # "Red", "90 days" twice
    assert {settled[k][1] for k in asked} == {"correct"}
    says_correct = FakeGenerator(lambda *_: '{"reason": "same", "verdict": "correct"}', name="agreeing-judge")
    r = crosscheck_run(workspace, first["run_id"], judge_generator=says_correct)
    assert (r["check_settled"], r["asked"], r["agree"], r["agreement"]) == (3, 3, 3, 1.0)
    capped = crosscheck_run(workspace, first["run_id"], limit=2,
                            judge_generator=FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT, name="scripted-judge"))
    assert (capped["asked"], capped["agree"], capped["agreement"]) == (2, 0, 0.0)
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT json_extract_string(payload_json, '$.question_id'), json_extract_string(payload_json, "
                       "'$.condition'), json_extract_string(payload_json, '$.judge_verdict') FROM events WHERE "
                       "run_id = ? AND kind = 'crosscheck' ORDER BY seq", [r["run_id"]]).fetchall()
    con.close()
    assert sorted((q, c) for q, c, _ in rows) == asked and {v for *_, v in rows} == {"correct"}
    code, verify, _ = run(capsys, ws, "audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["findings"] == []


def newest_eval_run(ws: Path) -> tuple[str, str | None]:
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    try:
        return con.execute("SELECT run_id, status FROM v_runs WHERE kind = 'eval-answers' "
                           "ORDER BY started_at DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()


def test_a_cancelled_eval_is_left_resumable_and_resumes(ws, tmp_path: Path) -> None:
    qs = small_set(tmp_path, ["s07", "s12", "s28"])
    workspace = open_workspace(ws)
    texts = question_texts(qs)
    judge = FakeGenerator(lambda *_: JUDGE_SAYS_INCORRECT, name="scripted-judge")
    progress = Progress()
    refusals = []

    def as_a_ui_would(e: ProgressEvent) -> None:
        if e.kind == "step" and e.done == 1:
            running = newest_eval_run(ws)[0]
            try:  # a second resume of the run while this process still works on it
                evaluate_answers(workspace, resume=running, generator=scripted_model(texts), judge_generator=judge)
            except UsageError as refused:
                refusals.append(str(refused))
            progress.cancel()
    progress.sink = as_a_ui_would
    with pytest.raises(Cancelled):
        evaluate_answers(workspace, qs, conditions="closed-book", generator=scripted_model(texts),
                         judge_generator=judge, progress=progress)
    run_id, status = newest_eval_run(ws)
    assert status is None  # not sealed as failed: resumable, although this process (its pid) is alive
    assert len(refusals) == 1 and "still running" in refusals[0]
    with pytest.raises(UsageError, match="is not the file"):  # another model than the one it started with
        evaluate_answers(workspace, resume=run_id, generator=FakeGenerator([], name="scripted", sha256="e" * 64),
                         judge_generator=judge)
    original = qs.read_text()
    qs.write_text(original.replace("?", "??", 1))
    with pytest.raises(UsageError, match="changed since"):  # its questions file was edited
        evaluate_answers(workspace, resume=run_id, generator=scripted_model(texts), judge_generator=judge)
    qs.write_text(original)
    changed_elsewhere = open_workspace(ws, ["ingest.max_tokens=100"])  # a section the evaluation does not read
    with pytest.raises(UsageError, match="llm.max_tokens"):
        evaluate_answers(open_workspace(ws, ["llm.max_tokens=7"]), resume=run_id, generator=scripted_model(texts),
                         judge_generator=judge)
    again = evaluate_answers(changed_elsewhere, resume=run_id[:8], generator=scripted_model(texts),
                             judge_generator=judge)
    assert again["run_id"] == run_id and [o["id"] for o in again["questions"]] == ["s07", "s12", "s28"]
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    per_question = con.execute("SELECT question_id, count(*) FROM answers WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                               [run_id]).fetchall()
    con.close()
    assert per_question == [("s07", 1), ("s12", 1), ("s28", 1)]


def test_resume_ignores_keys_and_sections_a_run_never_had() -> None:
    from appliance.config import load_config

    now = load_config(None, environ={})
    started = now.to_dict()
    started["eval"] = {k: v for k, v in started["eval"].items() if k != "alpha"}  # a key added since
    del started["retrieval"]                                                     # a section added since
    assert config_differences(started, now, ("llm", "retrieval", "eval")) == []
    started["llm"]["seed"] = 7
    assert config_differences(started, now, ("llm", "retrieval", "eval")) == ["llm.seed"]


def test_strategies_choose_by_their_rules_with_scripted_samples() -> None:
    from appliance.config import load_config
    from appliance.evaluation.strategies import StrategyRunner
    from appliance.llm.prompts import CONTEXT

    cfg = load_config(None, ["eval.samples=3"], environ={})
    context = "[1] (runbook.html)\nFull backups are kept for 90 days on bkp01."
    best = StrategyRunner(FakeGenerator(["Kept for a year on tape.", "Kept for 90 days on bkp01.", "I don't know."]),
                          cfg).run("best-of-n", CONTEXT, "How long are backups kept?", context)
    assert best.answer == "Kept for 90 days on bkp01." and best.details["chosen"] == "sample-2"
    vote = StrategyRunner(FakeGenerator(["90 days.", "I don't know", "90 Days"]), cfg).run(
        "self-consistency", CONTEXT, "How long?", context)
    assert vote.answer == "90 days." and vote.details["majority"] == round(2 / 3, 3)
    gen = FakeGenerator(["90 days", "90 days", "a year", "I don't know", "90 days (synthesis)"])
    council = StrategyRunner(gen, cfg).run("council", CONTEXT, "How long?", context)
    assert council.answer == "90 days (synthesis)" and len(council.steps) == 5
    assert "contrarian" in gen.calls[3][0] and "(contrarian) I don't know" in gen.calls[4][0]  # drafts reach the chair
    with pytest.raises(UsageError, match="unknown strategy"):
        StrategyRunner(gen, cfg).run("debate", CONTEXT, "How long?", context)


def test_the_oracle_and_the_gold_check_show_no_chunk_outside_the_callers_groups(ws, capsys, tmp_path: Path) -> None:
    from appliance.answering import Answerer

    answerer = Answerer.open(open_workspace(ws), FakeGenerator(lambda *_: "x"), need_index=True)
    s14 = next(json.loads(line) for line in (SAMPLES / "questions.jsonl").read_text().splitlines()
               if '"s14"' in line)  # its evidence is a row of salary-bands-2026.md, group hr
    for groups, seen in ((["hr"], True), ([], False), (["board"], False)):
        ctx, _ = answerer.context(s14["question"], "oracle", groups, (s14["evidence"],))
        assert any(p.chunk_id and p.file_name == "salary-bands-2026.md" for p in ctx.passages) is seen
        assert all(p.chunk_id for p in ctx.passages) is seen  # unseen: only the golden set's own quote stands in
        assert bool(ctx.missing_quotes) is not seen
    as_public = small_set(tmp_path, ["s14"])
    as_public.write_text(as_public.read_text().replace('"groups": ["hr"]', '"groups": []'))
    code, out, _ = run(capsys, ws, "gold", "check", "--questions", str(as_public), "--json")
    assert code == 1 and out["flagged_ids"] == ["s14"]  # its evidence is in no chunk this caller may see
    assert "not found" in out["findings"][0]["reason"]
    code, out, _ = run(capsys, ws, "gold", "check", "--questions", str(small_set(tmp_path, ["s14"])), "--json")
    assert code == 0 and out["flagged"] == 0
