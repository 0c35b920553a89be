"""Synthetic data: anchors, filters, withheld examples, resume, review, datasets and export (logic with a scripted
writer on the real index of the sample corpus; the real model's run is measured in the note, not here)."""
import itertools
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from appliance.cli import main
from appliance.errors import Cancelled, UsageError
from appliance.llm.fake import FakeGenerator
from appliance.models import REPO_ROOT
from appliance.progress import Progress
from appliance.sdg.anchors import (WHOLE_SENTENCE, _predicate, anchors_of, prose_sentences, question_opening, spread,
                                   table_hint)
from appliance.sdg.examples import contains_answer
from appliance.sdg.filters import (MISFRAMED, check_format, check_framing, check_grounding, findable_outcome,
                                   round_trip_outcome)
from appliance.workspace import open_workspace

SAMPLES = REPO_ROOT / "samples"


def excerpt_words(prompt: str) -> tuple[str, str]:
    """From a question writer's prompt: six words of its excerpt that are not in its answer, and the answer."""
    excerpt, answer = prompt.rsplit("Excerpt:\n", 1)[1].split("\n\nAnswer: ", 1)
    answer = answer.split("\n")[0]
    return " ".join([w for w in re.findall(r"[A-Za-z][\w-]*", excerpt) if w.lower() not in answer.lower()][:6]), answer


def scripted_writer() -> FakeGenerator:
    """Writes "What is stated about <the excerpt's first words>?" for an anchored answer and remembers the answer, which
    it gives back when the question is asked with passages (the round trip)."""
    asked: dict[str, str] = {}

    def script(prompt: str, params, schema) -> str:
        if "Excerpt:" in prompt:
            words, answer = excerpt_words(prompt)
            question = f"What is stated about {words}?"
            asked[question] = answer
            return question
        question = prompt.rsplit("Question: ", 1)[-1].split("\n")[0].strip()
        return asked.get(question, "I don't know")
    return FakeGenerator(script, name="scripted-writer")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sdgws") / "ws"
    corpus = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(SAMPLES / "corpus", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    return root


def run_cli(capsys, ws: Path, *args: str):
    code = main(["--workspace", str(ws), *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and out.strip() else out), err


# --- anchors and filters (pure) -----------------------------------------------------------------------------------

def test_anchors_take_their_answers_verbatim_from_the_chunk() -> None:
    chunk = {"chunk_id": "c1", "doc_id": "d", "section": "Backups", "element_types": ["NarrativeText", "Table"],
             "text": "Backup schedule\nsystem type retention\nfs01 full 90 days\nThe backup server is a "
                     "rack-mounted appliance in the second data centre. Restores are tested every 6 months by "
                     "the operations team."}
    tables = [(("system", "type", "retention"), ("fs01", "full", "90 days"))]
    found = anchors_of(chunk, ["fact", "number", "table", "procedure"], 3, 0, tables)
    kinds = {a.kind: a for a in found}
    assert kinds["table"].answer in ("full", "90 days") and "system: fs01" in kinds["table"].excerpt
    assert kinds["number"].answer == "6 months"
    assert kinds["fact"].answer == "a rack-mounted appliance in the second data centre"
    for a in found:
        assert a.answer in chunk["text"] or a.kind == "table"


def test_reference_entries_give_definitions_and_headings_do_not() -> None:
    """A term line over a sentence without a subject of its own is a definition (API, command-line and glossary
    entries); a heading over an instruction, and a sentence that has its own subject, are not."""
    chunk = {"chunk_id": "c2", "doc_id": "d", "section": "backupctl > 3.2 Restores", "element_types": None,
             "text": "backupctl.prune(keep=7)\nRemove every snapshot older than the newest keep snapshots.\n"
                     "--dry-run\nPrint the snapshots that would be removed without removing them.\n"
                     "retention class\nA named policy that says how long each kind of snapshot is kept.\n"
                     "3.2 Restores\nOpen a restore ticket before you touch the backup server.\n"
                     "verify\nThe verify command reads every block of a snapshot back from disk.\n"
                     "4 Hotels\nUse the hotels that the travel agency has agreements with."}
    found = {a.hint: a for a in anchors_of(chunk, ["definition"], 10, 0)}
    assert set(found) == {"what backupctl.prune(keep=7) does", "what --dry-run does", "what retention class is"}
    prune = found["what backupctl.prune(keep=7) does"]
    assert prune.answer == "Remove every snapshot older than the newest keep snapshots"
    assert prune.excerpt == "backupctl.prune(keep=7)\nRemove every snapshot older than the newest keep snapshots."


def test_prose_sentences_skip_code_and_navigation() -> None:
    text = "Navigation\n>>> x = 1\nThe module provides a fast way to compare sorted sequences of values.\nindex |"
    assert prose_sentences(text) == ["The module provides a fast way to compare sorted sequences of values."]
    assert _predicate("It is the default.") is None  # no subject to ask about
    leaning = ("A handler of last resort is available through this attribute.\n"  # which attribute?
               "The dict object passed to the constructor must support those methods.\n"  # which methods?
               "Another difference is that the sort method is only defined for lists.")
    assert prose_sentences(leaning) == []


def test_spread_reaches_every_document_before_the_second_chunk_of_any() -> None:
    chunks = [{"chunk_id": f"{d}{i}", "doc_id": d, "section": f"s{i % 2}", "ordinal": i} for d in "abc"
              for i in range(4)]
    order = spread(chunks)
    assert {c["doc_id"] for c in order[:3]} == {"a", "b", "c"} and len(order) == len(chunks)


@pytest.mark.parametrize("question,answer,passed", [
    ("How long are full backups of fs01 kept?", "90 days", True),
    ("How long are full backups kept for 90 days?", "90 days", False),          # gives the answer
    ("full backups kept", "90 days", False),                                   # not a question
    ("What is the on-call on-call rota?", "a two-tier rota", False),           # stutter
    ("What does the sentence say about full backups?", "90 days", False),      # points at a passage
    ("What does the backup server package say about tapes?", "Tapes are kept for a year", False),  # what a text says
    ("What is the purpose of the Format Strings section in the document?", "to describe layouts", False),
    ("What does this module provide for full backups?", "a scheduler", False),  # a demonstrative
    ("What are the most common types used for that purpose?", "int and str", False),
    ("What is the name of the module that schedules full backups?", "backupd", True),  # a relative "that"
    ("What is the purpose of the file in the same namespace as the shell?", "to run startup code", False),  # unnamed
    ("What does the reference point of the returned value refer to?", "nothing defined", False),
    ("How can the module's functions be used for backups?", "to pack records", False),
    ("What does the function 'backup.run()' return?", "a report", True),       # named
    ("What is the return value of backup.run()?", "a report", True),
    ("What does backup.run() accept as its target?", "a path (for instance", False),  # cut inside its brackets
    ("What does backup.run() accept as its target?", "a path (or a list of paths)", True),
    ("What do you think about full backups on Sundays?", "they are kept longer", False),  # an opinion
    ("How do you start a full backup of fs01?", "with the nightly script", True),
])
def test_format_filter(question: str, answer: str, passed: bool) -> None:
    from appliance.config import SDGConfig

    assert check_format(question, answer, SDGConfig()).passed is passed


@pytest.mark.parametrize("question,answer,passed", [
    ("What is the backup server in the rack?", "The backup server combines a disk with two tapes", False),
    ("What does the backup server combine?", "The backup server combines a disk with two tapes", True),
    ("What is the backup server?", "The backup server is the host that keeps the tapes", True),
    ("What is the purpose of the backup server?", "The backup server keeps every snapshot for 90 days", True),
    ("What is the retention of full backups?", "90 days", True),  # not a sentence: nothing to misframe
    ("What is the nightly backup?", "strongly affected by the tape speed", False),  # a predicate: how it is
    ("What is the nightly backup?", "a full copy of every disk", True),             # a predicate: what it is
    ("What is the name of the web installer?", "a small initial download", False),  # a name asked, not given
    ("What is the name of the backup daemon?", "backupd", True),
    ("What is the acronym UTC?", "not a mistake but a compromise", False),           # the "not" dropped
    ("Why is the acronym UTC not a mistake?", "not a mistake but a compromise", True),
])
def test_framing_filter(question: str, answer: str, passed: bool) -> None:
    assert check_framing(question, answer).passed is passed


@pytest.mark.parametrize("question,answer,passed", [
    ("What is the purpose of storing more frames?", "Storing more frames increases the memory overhead", False),
    ("What is the role of negative indexes?", "Negative indexes are treated as relative to the end", False),
    ("What does storing more frames increase?", "Storing more frames increases the memory overhead", True),
    ("What is the purpose of the secrets module?", "The secrets module is used for generating tokens", True),
    ("What is the purpose of hash randomization?", "Hash randomization is intended to protect a server", True),
])
def test_a_purpose_asked_of_a_whole_sentence_must_be_what_it_says(question: str, answer: str, passed: bool) -> None:
    """Asked of a whole sentence, "What is the purpose of X?" needs a sentence that says what X is for; such a
    failure is mended like a misframed "What is X?" (its rewrite opens from the verb). A short answer (a predicate
    of the sentence) is left to the other rules."""
    outcome = check_framing(question, answer, "fact", "", WHOLE_SENTENCE)
    assert outcome.passed is passed
    assert passed or outcome.detail.startswith(MISFRAMED)
    assert check_framing(question, answer, "fact", "", "what storing more frames does").passed


def test_a_fact_asked_with_its_section_heading_fails_framing() -> None:
    """A FAQ heading copied as the question of one sentence under it; a table cell may answer its heading."""
    section = "backup.html > Questions > How do I restore a backup?¶"
    asked = "How do I restore a backup?"
    assert not check_framing(asked, "The tapes are kept for 90 days", "fact", section).passed
    assert check_framing(asked, "restore-tool", "table", section).passed
    assert check_framing("How long are the tapes kept?", "The tapes are kept for 90 days", "fact", section).passed


@pytest.mark.parametrize("question,key,passed", [
    ("What is the type code of an array in Python?", "'h'", False),      # every row of the column has a Python type
    ("What is the Python type of the array type code 'h'?", "'h'", True),
    ("What is the population standard deviation of data?", "variance()", False),
    ("What does variance() compute?", "variance()", True),
    ("What is the meaning of '%j' in a format string?", "%j", True),
    ("What does a format string's %j directive mean?", "%H", False),
    ("How long are full backups of databases retained?", "Full backup", True),   # a form of the key's word
])
def test_a_table_cells_question_must_name_its_row(question: str, key: str, passed: bool) -> None:
    assert check_framing(question, "int", "table", "Tables", table_hint("Python Type", key)).passed is passed


def test_a_row_keyed_by_its_index_is_named_by_its_other_cells() -> None:
    hint, row = table_hint("Values", "2"), "2 tm_mday range [1, 31]"
    assert check_framing("What is the range of the tm_mday attribute?", "range [1, 31]", "table", "", hint, row).passed
    assert not check_framing("What is the range of the attribute?", "range [1, 31]", "table", "", hint, row).passed


@pytest.mark.parametrize("question,passed", [
    ("What is the purpose of the Format Characters > Format Strings section?", False),
    ("What are the parts of PYTHONIOENCODING in the command line and environment > 1.2?", False),
    ("What does 3 > 2 evaluate to in Python?", True),
    ("Which operator tests whether a > b holds?", True),
])
def test_a_question_that_quotes_a_heading_path_fails_framing(question: str, passed: bool) -> None:
    assert check_framing(question, "True").passed is passed


def test_a_free_pair_cut_off_at_its_token_limit_is_a_failed_attempt() -> None:
    """The writer closed a reply cut at max_tokens as JSON, which kept an answer ending mid-sentence ("... The PSF's
    home page is at https://www.python.org/psf/. Donations")."""
    from dataclasses import replace

    from appliance.config import Config
    from appliance.sdg.generate import Writer

    class Cut(FakeGenerator):
        def generate(self, prompt, params, stop=(), json_schema=None):  # noqa: ANN001, ANN201
            g = super().generate(prompt, params, stop, json_schema)
            return replace(g, finish_reason="length") if len(self.calls) == 1 else g

    gen = Cut(['What is the PSF?", "answer": "The PSF holds the copyright. Donations',
               'What is the PSF?", "answer": "The PSF holds the copyright on Python.'])
    chunk = {"chunk_id": "c1", "doc_id": "d", "file_name": "faq.html", "section": "FAQ", "title": "FAQ",
             "text": "The PSF holds the copyright on Python."}
    pair = Writer(gen, Config()).write_free(chunk, "train")
    assert not isinstance(pair, str) and pair.answer == "The PSF holds the copyright on Python." and pair.attempts == 2


def test_a_question_that_restates_most_of_its_answer_fails_format() -> None:
    from appliance.config import SDGConfig

    answer = "The ordering of format characters may have an impact on size in native mode since padding is implicit"
    restated = "What may happen if the ordering of format characters has an impact on size in native mode?"
    assert not check_format(restated, answer, SDGConfig()).passed   # 7 of 11 content words: passed at the old 0.7
    assert check_format("Why may the ordering of format characters matter?", answer, SDGConfig()).passed


@pytest.mark.parametrize("sentence,opening", [
    ("The backup server combines a disk with two tapes.", "What does"),
    ("Backup servers keep two tapes.", "What do"),
    ("Either job can raise an exception.", "What can"),
    ("The retention is configured by the installer.", "How is"),
    ("Strings are stored internally as sequences of code points.", "How are"),
    ("The old trashcan macros are now deprecated.", ""),  # "How are the macros deprecated?" only restates it
    ("The retention is configured at install time.", ""),
    ("The backup server does not support tapes.", ""),  # a question without the "not" would invert it
    ("The backup server is the host that keeps the tapes.", ""),
])
def test_question_openings_follow_the_main_verb(sentence: str, opening: str) -> None:
    assert question_opening(sentence) == opening


def test_grounding_rejects_a_question_about_a_neighbouring_sentence() -> None:
    from appliance.config import SDGConfig

    evidence = "Full backups of the file server fs01 run daily and are kept for 90 days."
    assert check_grounding("How long are full backups of fs01 kept?", evidence, "runbook", SDGConfig()).passed
    drift = check_grounding("How long are incremental snapshots of the mail server kept?", evidence, "runbook",
                            SDGConfig())
    assert not drift.passed and "incremental" in drift.detail


def test_round_trip_compares_the_answer_not_the_topic() -> None:
    assert round_trip_outcome("number", "90 days", "kept for 90 days", "They are kept for 90 days.").passed
    assert not round_trip_outcome("number", "90 days", "kept for 90 days", "For 30 days.").passed
    assert not round_trip_outcome("fact", "an engineer from IT Operations", "", "I don't know").passed


# --- the pipeline on the sample index with a scripted writer ------------------------------------------------------

@pytest.mark.parametrize("sentence,stands", [
    ("The wave module provides a convenient interface to the WAV sound format.", True),
    ("Full backups of the file server fs01 run daily and are kept for 90 days.", True),
    ("Convert the color from HLS coordinates to RGB coordinates.", False),          # no subject: a function's doc
    ("Provides the time and datetime types used by the class.", False),
    ("In all other spaces, the coordinates are all between 0 and 1.", False),       # tied to what came before
    ("If no argument is given, the file in the home directory is read.", False),
])
def test_fact_sentences_must_open_with_their_subject(sentence: str, stands: bool) -> None:
    from appliance.sdg.anchors import opens_with_its_subject

    assert opens_with_its_subject(sentence) is stands


def test_a_question_that_does_not_single_out_its_passage_is_not_findable(ws) -> None:
    from appliance.retrieval import Retriever

    workspace = open_workspace(ws)
    retriever = Retriever(workspace.config, workspace.index_dir)
    k = workspace.config.eval.context_k
    source = next(c for c, _ in retriever.visible([]) if "badge" in c["text"].lower() and "visitor" in c["text"].lower())

    def outcome(question: str):
        hits = retriever.search(question, k=k).hits
        return findable_outcome(source["chunk_id"], source["text"], [(h.chunk_id, h.text) for h in hits], k)
    assert outcome("What colour is the visitor badge?").passed
    vague = outcome("What does the sentence state about it?")
    assert not vague.passed and vague.threshold == k and "does not single out" in vague.detail
    twin = findable_outcome("another-id", source["text"], [("x", "other"), (source["chunk_id"], source["text"])], k)
    assert twin.passed and twin.score == 2  # a chunk of identical text counts as the source


def test_generation_records_every_candidate_and_filter_and_resumes_without_duplicates(ws) -> None:
    from appliance.sdg.generate import generate_pairs

    workspace = open_workspace(ws, ["sdg.target_pairs=8", "sdg.probe_questions=3", "sdg.batch_chunks=2"])
    progress = Progress()
    progress.sink = lambda e: progress.cancel() if e.kind == "step" and e.done >= 20 else None
    with pytest.raises(Cancelled):
        generate_pairs(workspace, progress=progress, generator=scripted_writer())
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    run_id, status = con.execute("SELECT run_id, status FROM v_runs WHERE kind = 'sdg-generate'").fetchall()[0]
    first = con.execute("SELECT count(*) FROM sdg_pairs WHERE run_id = ?", [run_id]).fetchall()[0][0]
    con.close()
    assert status is None and first > 0  # interrupted after whole chunks: resumable
    summary = generate_pairs(workspace, resume=run_id[:6], generator=scripted_writer())
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    pairs = con.execute("SELECT pair_id, chunk_id FROM sdg_pairs WHERE run_id = ?", [run_id]).fetchall()
    done = con.execute("SELECT json_extract_string(payload_json, '$.chunk_id') FROM events WHERE run_id = ? "
                       "AND kind = 'sdg_chunk_done'", [run_id]).fetchall()
    filters = con.execute("SELECT DISTINCT pair_id FROM sdg_filters WHERE run_id = ?", [run_id]).fetchall()
    con.close()
    assert summary["run_id"] == run_id and summary["candidates"] == len(pairs) > first
    assert len({p for p, _ in pairs}) == len(pairs) and len({d for (d,) in done}) == len(done)  # nothing twice
    assert {p for (p,) in filters} == {p for p, _ in pairs}  # every candidate has its filter outcomes
    assert summary["survival"][0]["filter"] == "contamination"
    assert summary["kept"] == summary["survival"][-1]["surviving"]
    per_batch = workspace.config.sdg.batch_chunks * workspace.config.sdg.per_chunk  # a batch may overshoot
    assert 3 <= summary["kept_by_split"].get("probe", 0) < 3 + per_batch
    assert summary["kept_by_split"].get("validation", 0) >= 1  # its own share of the 8 (budgets)


def test_the_last_batch_is_recorded_where_the_chunks_after_it_are_skipped(tmp_path: Path, monkeypatch) -> None:
    """A batch larger than what the budgets leave: the chunks after the last one written belong to splits already
    full and are skipped, and the written batch is still filtered and recorded (it was dropped: 12 of 44 chunks'
    questions lost, the validation split's among them, and the ladder then trained nothing)."""
    from appliance.sdg import generate as g

    root, corpus = tmp_path / "ws", tmp_path / "corpus"
    shutil.copytree(SAMPLES / "corpus", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    written: list[str] = []
    write = g._write
    monkeypatch.setattr(g, "_write", lambda w, chunk, *a: written.append(chunk["chunk_id"]) or write(w, chunk, *a))
    summary = g.generate_pairs(open_workspace(root, ["sdg.target_pairs=8", "sdg.probe_questions=3",
                                                     "sdg.batch_chunks=32"]), generator=scripted_writer())
    con = duckdb.connect(str(root / "audit.duckdb"), read_only=True)
    done = con.execute("SELECT json_extract_string(payload_json, '$.chunk_id') FROM events "
                       "WHERE kind = 'sdg_chunk_done'").fetchall()
    con.close()
    assert len(written) > 32 and sorted(written) == sorted(d for (d,) in done)   # every written chunk recorded
    assert summary["kept_by_split"].get("validation", 0) >= 1


def test_planted_copies_of_golden_questions_are_rejected(ws, tmp_path: Path) -> None:
    from appliance.sdg.generate import generate_pairs

    golden = [json.loads(line) for line in (SAMPLES / "questions.jsonl").read_text().splitlines()]
    planted = itertools.cycle(q["question"] for q in golden)

    def copying(prompt, params, schema):  # writes golden questions, lightly changed, and answers them
        if "Excerpt:" in prompt:
            return next(planted).replace("What", "Which")
        return "I don't know"
    summary = generate_pairs(open_workspace(ws, ["sdg.target_pairs=6", "sdg.probe_questions=0"]),
                             golden=[SAMPLES / "questions.jsonl"], generator=FakeGenerator(copying))
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    outcomes = con.execute("SELECT passed, detail FROM sdg_filters WHERE run_id = ? AND filter = 'contamination'",
                           [summary["run_id"]]).fetchall()
    con.close()
    assert outcomes and not any(passed for passed, _ in outcomes)
    assert all("closest golden question s" in detail for _, detail in outcomes)


def test_withheld_examples_never_contain_their_answer(ws) -> None:
    from appliance.answering import Answerer
    from appliance.sdg.examples import ExampleBuilder

    workspace = open_workspace(ws)
    answerer = Answerer.open(workspace, FakeGenerator([]), need_index=True)
    chunks = [c for c, _ in answerer.retriever.visible([])]
    builder = ExampleBuilder(answerer, chunks, [])
    checked = 0
    for chunk in chunks:
        for a in anchors_of(chunk, ["fact", "number"], 2, 0):
            passages = builder.near_misses(f"What about {a.answer}?", a.answer, a.evidence, chunk)
            assert all(not contains_answer(p.text, a.answer) for p in passages)
            checked += bool(passages)
    assert checked >= 20
    assert contains_answer("kept for 90 days on bkp01", "90 days") and not contains_answer("kept on bkp01", "90 days")


def test_a_share_of_pairs_shows_fewer_passages_with_the_evidence_kept(ws) -> None:
    """sdg.fewer_passages_share: those pairs' examples show 1 or 2 of the 3 passages (the evidence always among a
    present example's, in the order rag gave them), present and withheld alike; the rest show 3, as rag does."""
    from appliance.answering import Answerer
    from appliance.sdg.examples import ExampleBuilder

    workspace = open_workspace(ws, ["sdg.fewer_passages_share=0.5"])
    answerer = Answerer.open(workspace, FakeGenerator([]), need_index=True)
    chunks = [c for c, _ in answerer.retriever.visible([])]
    builder = ExampleBuilder(answerer, chunks, [])
    counts, shown = Counter(), Counter()
    for chunk in chunks[:30]:
        a = next(iter(anchors_of(chunk, ["fact"], 1, 0)), None)
        if a is None:
            continue
        pair = {"pair_id": chunk["chunk_id"], "chunk_id": chunk["chunk_id"], "question": f"What about {a.answer}?",
                "answer": a.answer, "evidence": a.evidence, "file_name": chunk["file_name"],
                "section": chunk["section"], "kind": "fact", "split": "train"}
        n = builder.passage_count(pair)
        assert builder.passage_count(pair | {"pair_id": "another-id"}) == n   # drawn from what it says, not its id
        counts[n] += 1
        present, withheld = builder.present(pair), builder.withheld(pair)
        assert len(present.passage_chunk_ids) <= n
        assert any(a.evidence in p["text"] for p in present.extra["passages"])   # the source, or a chunk sharing it
        shown[len(present.passage_chunk_ids)] += 1
        assert isinstance(withheld, str) or len(withheld.passage_chunk_ids) <= n
        if n < 3:
            rag, _ = answerer.context(pair["question"], "rag", [], (a.evidence,))
            order = [p.chunk_id for p in rag.passages]
            if chunk["chunk_id"] in order:   # a subsequence of rag's own order
                assert present.passage_chunk_ids == [c for c in order if c in present.passage_chunk_ids]
    assert counts[3] >= 5 and counts[1] + counts[2] >= 5 and shown[1] >= 1
    builder.cfg.sdg.fewer_passages_share = 0.0
    assert all(builder.passage_count({"file_name": c["file_name"], "section": c["section"], "kind": "fact",
                                      "question": c["text"][:40], "answer": "x"}) == 3 for c in chunks[:30])


def test_review_dataset_export_and_trl_loading(ws, capsys, tmp_path: Path) -> None:
    from appliance.sdg.generate import generate_pairs

    generate_pairs(open_workspace(ws, ["sdg.target_pairs=10", "sdg.probe_questions=0"]), generator=scripted_writer())
    code, _, err = run_cli(capsys, ws, "sdg", "dataset")  # nothing approved yet: says what to do
    assert code == 2 and "review" in err and "--unreviewed" in err
    code, pending, _ = run_cli(capsys, ws, "sdg", "review", "list", "--split", "train", "--json")
    assert code == 0 and pending and all(p["status"] == "pending" and p["source"] for p in pending)
    first, second = pending[0]["pair_id"], pending[1]["pair_id"]
    code, _, err = run_cli(capsys, ws, "sdg", "review", "reject", second)
    assert code == 2 and "--reason" in err
    assert run_cli(capsys, ws, "sdg", "review", "reject", second, "--reason", "vague", "--reviewer", "bo")[0] == 0
    assert run_cli(capsys, ws, "sdg", "review", "edit", first[:8], "--question", "Which answer is right?",
                   "--reviewer", "ann")[0] == 0
    code, card, err = run_cli(capsys, ws, "sdg", "dataset", "--json")
    assert code == 0, err
    assert card["reviewed_only"] and card["pairs"]["used"] == 1 and card["pairs"]["never_reviewed"] == 0
    rows = [json.loads(line) for line in Path(card["path"], "train.jsonl").read_text().splitlines()]
    rows += [json.loads(line) for line in Path(card["path"], "validation.jsonl").read_text().splitlines()]
    assert {r["prompt"][1]["content"].rsplit("Question: ", 1)[1] for r in rows} == {"Which answer is right?"}
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    reviews = con.execute("SELECT pair_id, action, reviewer FROM v_sdg_reviews ORDER BY created_at").fetchall()
    con.close()
    assert (second, "reject", "bo") in reviews and (first, "edit", "ann") in reviews
    code, everything, _ = run_cli(capsys, ws, "sdg", "dataset", "--unreviewed", "--json")
    assert code == 0 and not everything["reviewed_only"] and everything["pairs"]["never_reviewed"] > 0
    assert second not in {e.split("-")[0] for e in _ids(everything)}  # a rejected pair stays out
    code, out, _ = run_cli(capsys, ws, "sdg", "export", everything["dataset_id"], "--format", "openai", "--json")
    assert code == 0 and all(Path(f).is_file() for f in out["files"])
    for fmt in ("prompt-completion", "chat", "alpaca"):
        assert run_cli(capsys, ws, "sdg", "export", everything["dataset_id"], "--format", fmt)[0] == 0
    _loads_in_trl(Path(everything["path"]))


def _ids(card: dict) -> list[str]:
    folder = Path(card["path"])
    return [json.loads(line)["id"] for s in ("train", "validation")
            for line in (folder / f"{s}.jsonl").read_text().splitlines()]


def _loads_in_trl(folder: Path) -> None:
    """TRL reads the prompt-completion files as they are: conversational, and its chat-template step renders
    prompt and completion with a tokenizer (the test model's, read from its GGUF)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from appliance.models import DEFAULT_MODELS_DIR, ModelCatalog

    data = load_dataset("json", data_files={"train": str(folder / "train.jsonl")})["train"]
    assert len(data) > 0 and is_conversational(data[0])
    entry = ModelCatalog().get("test-generator")
    tok = AutoTokenizer.from_pretrained(str(DEFAULT_MODELS_DIR), gguf_file=entry.file)
    rendered = maybe_apply_chat_template(data[0], tok)
    assert data[0]["completion"][0]["content"] in rendered["completion"] and "Passages:" in rendered["prompt"]


def test_bad_input_gets_a_clear_message(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    code, _, err = run_cli(capsys, empty, "sdg", "generate")
    assert code == 2 and "index is empty" in err
    code, _, err = run_cli(capsys, empty, "sdg", "export", "nope")
    assert code == 2 and "dataset 'nope' does not exist" in err
    header_only = {"chunk_id": "h", "doc_id": "d", "section": "", "element_types": ["Table"],
                   "text": "system type retention"}
    assert anchors_of(header_only, ["fact", "number", "table", "procedure"], 2, 0,
                      [(("system", "type", "retention"),)]) == []
    norsk = {"chunk_id": "n", "doc_id": "d", "section": "", "element_types": ["NarrativeText"],
             "text": "Sikkerhetskopier av filserveren tas hver natt og oppbevares i 90 dager på bkp01."}
    assert all(a.answer in norsk["text"] for a in anchors_of(norsk, ["fact", "number"], 2, 0))


def test_a_run_that_keeps_nothing_says_so(ws, capsys, monkeypatch) -> None:
    import appliance.sdg.generate as generate

    monkeypatch.setattr(generate, "load_generator", lambda *a, **k: FakeGenerator(lambda *_: "not a question"))
    code, out, err = run_cli(capsys, ws, "--set", "sdg.target_pairs=3", "--set", "sdg.probe_questions=0",
                             "sdg", "generate")
    assert code == 0 and "0 candidate pairs" in out and "unparseable after retries" in out and "0 kept" in out


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_sdg import scripted_writer
from appliance.sdg.generate import generate_pairs
from appliance.workspace import open_workspace
writer = scripted_writer()
slow = writer._script
writer._script = lambda *a: (time.sleep(0.05), slow(*a))[1]  # a model's pace, so the kill lands mid-run
from pathlib import Path
generate_pairs(open_workspace(Path({ws!r}), ["sdg.target_pairs=40", "sdg.probe_questions=5", "sdg.batch_chunks=2"]),
               generator=writer)
"""


def test_a_generation_killed_with_sigkill_resumes_without_duplicates(ws) -> None:
    import signal
    import subprocess
    import sys
    import time

    from appliance.audit import AuditStore, query
    from appliance.sdg.generate import generate_pairs

    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent), ws=str(ws))])
    deadline = time.monotonic() + 120
    done = 0
    while done < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        _, rows = query(ws / "audit.duckdb", "SELECT count(*) FROM events e JOIN runs r USING (run_id) WHERE "
                        "e.kind = 'sdg_chunk_done' AND r.run_id NOT IN (SELECT run_id FROM events WHERE kind = "
                        "'run_end') AND r.kind = 'sdg-generate'")
        done = rows[0][0]
    proc.send_signal(signal.SIGKILL)  # no clean-up: no run_interrupted, no run_end
    proc.wait(timeout=30)
    assert done >= 2, "the child wrote no chunk before the deadline"
    _, rows = query(ws / "audit.duckdb", "SELECT run_id FROM v_runs WHERE kind = 'sdg-generate' AND status IS NULL "
                    "ORDER BY started_at DESC LIMIT 1")
    (run_id,) = rows[0]
    summary = generate_pairs(open_workspace(ws, ["sdg.target_pairs=40", "sdg.probe_questions=5",
                                                 "sdg.batch_chunks=2"]), resume=run_id, generator=scripted_writer())
    assert summary["run_id"] == run_id
    _, pairs = query(ws / "audit.duckdb", f"SELECT pair_id FROM sdg_pairs WHERE run_id = '{run_id}'")
    _, chunks = query(ws / "audit.duckdb", "SELECT json_extract_string(payload_json, '$.chunk_id') FROM events "
                      f"WHERE run_id = '{run_id}' AND kind = 'sdg_chunk_done'")
    assert len({p for (p,) in pairs}) == len(pairs) and len({c for (c,) in chunks}) == len(chunks)
    with AuditStore(ws / "audit.duckdb") as store:
        report = store.verify()
        assert report.ok, [str(f) for f in report.findings]


def test_the_split_unit_is_the_document_unless_a_split_would_be_left_without_one() -> None:
    from appliance.config import Config
    from appliance.sdg.generate import split_unit

    many = [{"file_name": f"doc{i}.md", "section": "Scope"} for i in range(40)]
    one = [{"file_name": "manual.md", "section": f"Part {i}"} for i in range(40)]
    assert split_unit(many, Config()) == "document" and split_unit(one, Config()) == "section"
    no_held_out = Config()
    no_held_out.sdg.validation_share = no_held_out.sdg.probe_share = 0.0
    assert split_unit(one, no_held_out) == "document"


def test_a_one_document_corpus_is_split_by_section(tmp_path: Path, capsys) -> None:
    """One long manual split by document puts every pair on one side: no validation loss (training refuses) and no
    probe. Split by section, each split gets pairs, no section is on two sides, and the dataset trains."""
    from appliance.sdg.generate import generate_pairs

    root, corpus = tmp_path / "ws", tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SAMPLES / "corpus" / "information-security-policy.md", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    capsys.readouterr()
    summary = generate_pairs(open_workspace(root, ["sdg.probe_questions=50"]), generator=scripted_writer())
    con = duckdb.connect(str(root / "audit.duckdb"), read_only=True)
    start = con.execute("SELECT json_extract_string(payload_json, '$.split_unit') FROM events "
                        "WHERE run_id = ? AND kind = 'sdg_start'", [summary["run_id"]]).fetchone()[0]
    sides = con.execute("SELECT section, list(DISTINCT split) FROM v_sdg_pairs WHERE run_id = ? AND passed "
                        "GROUP BY section", [summary["run_id"]]).fetchall()
    con.close()
    assert start == "section"
    assert all(len(splits) == 1 for _, splits in sides), sides
    assert {s for _, splits in sides for s in splits} == {"train", "validation", "probe"}, sides
    code, card, err = run_cli(capsys, root, "sdg", "dataset", "--unreviewed", "--json")
    assert code == 0, err
    assert card["split_unit"] == "section" and card["by_split"].get("validation", 0) > 0
    assert card["coverage"]["training_documents"] == 1


def test_the_probe_asks_the_held_out_splits_and_says_which(tmp_path: Path, capsys) -> None:
    """The probe asks the validation documents' pairs as well as the probe documents' (neither is trained on), each
    question says its split, and turning sdg.probe_validation off leaves the probe documents only."""
    from appliance.sdg.generate import generate_pairs
    from appliance.sdg.probe import write_probe

    root, corpus = tmp_path / "ws", tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SAMPLES / "corpus" / "information-security-policy.md", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    capsys.readouterr()
    generate_pairs(open_workspace(root, ["sdg.probe_questions=50"]), generator=scripted_writer())
    both = write_probe(open_workspace(root), generator=scripted_writer())
    rows = [json.loads(line) for line in Path(both["path"]).read_text().splitlines()]
    assert both["by_split"]["probe"] > 0 and both["by_split"]["validation"] > 0, both
    assert sum(both["by_split"].values()) == both["questions"] == len(rows) // 2
    assert {r["split"] for r in rows} == {"probe", "validation"}
    only = write_probe(open_workspace(root, ["sdg.probe_validation=false"]), generator=scripted_writer())
    assert only["by_split"] == {"probe": both["by_split"]["probe"]}
    assert {json.loads(line)["split"] for line in Path(only["path"]).read_text().splitlines()} == {"probe"}


def test_the_same_corpus_in_another_folder_gives_the_same_pairs_and_examples(tmp_path: Path, capsys) -> None:
    """Which sentences become questions, which chunks get a free-form pair and which pairs are withheld are seeded
    by what the corpus says, not by chunk or pair ids (those hash the corpus's path): the same documents ingested
    from two folders give the same pairs and the same training examples."""
    from appliance.audit import AuditStore
    from appliance.sdg.dataset import build_dataset, pair_states
    from appliance.sdg.generate import generate_pairs

    made = []
    for place in ("a", "somewhere/else/entirely"):
        root, corpus = tmp_path / place / "ws", tmp_path / place / "corpus"
        corpus.mkdir(parents=True)
        shutil.copy(SAMPLES / "corpus" / "information-security-policy.md", corpus)
        assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
        capsys.readouterr()
        ws = open_workspace(root, ["sdg.free_share=0.3"])
        generate_pairs(ws, generator=scripted_writer())
        with AuditStore(ws.audit_path) as store:
            pairs = sorted((p["split"], p["kind"], p["question"], p["answer"], p["passed"]) for p in pair_states(store))
        card = build_dataset(ws, unreviewed=True, generator=scripted_writer())
        lines = [json.loads(line) for s in ("train", "validation")
                 for line in (Path(card["path"]) / f"{s}.jsonl").read_text().splitlines()]
        examples = sorted((json.dumps(x["prompt"]), json.dumps(x["completion"]), x["evidence_withheld"]) for x in lines)
        made.append((pairs, examples))
    assert made[0][0] and made[0][1]
    assert made[0] == made[1]


def test_the_estimate_takes_the_survival_measured_in_this_workspace(tmp_path: Path, capsys, monkeypatch) -> None:
    """The first run's estimate assumes the samples' survival; once the workspace has candidates of its own (its
    corpus, its rules), their measured survival replaces it."""
    from appliance.sdg import generate as g

    root, corpus = tmp_path / "ws", tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SAMPLES / "corpus" / "information-security-policy.md", corpus)
    assert main(["--workspace", str(root), "ingest", str(corpus), "--json"]) == 0
    capsys.readouterr()
    assert g._survival(open_workspace(root)) == (g.ASSUMED_SURVIVAL, "as measured on the samples")
    summary = g.generate_pairs(open_workspace(root), generator=scripted_writer())
    monkeypatch.setattr(g, "MEASURED_FROM", summary["candidates"] + 1)  # one too few of its own
    assert g._survival(open_workspace(root))[0] == g.ASSUMED_SURVIVAL
    monkeypatch.setattr(g, "MEASURED_FROM", summary["candidates"])
    share, source = g._survival(open_workspace(root))
    assert share == pytest.approx(summary["kept"] / summary["candidates"]) and share != g.ASSUMED_SURVIVAL
    assert f"this workspace's {summary['candidates']} earlier candidates" in source


def test_validation_has_its_own_share_of_the_target() -> None:
    """Training and validation stop on their own counts, divided by their chunks: chunks of training documents met
    first cannot fill sdg.target_pairs and leave the validation loss without examples (the ladder then trains
    nothing), nor can a share setting ask training for more than its documents give (the devset's lumpy split)."""
    from collections import Counter

    from appliance.config import Config
    from appliance.sdg.generate import budgets

    cfg = Config()
    cfg.sdg.target_pairs, cfg.sdg.probe_questions = 12, 4
    sizes = Counter(train=70, validation=10, probe=20)
    assert budgets(cfg, sizes) == {"train": 10, "validation": 2, "probe": 4}  # 10 of the 80 not probed, rounded up
    assert budgets(cfg, Counter(train=50, validation=30, probe=20)) == {"train": 7, "validation": 5, "probe": 4}
    cfg.sdg.target_pairs = 1
    assert budgets(cfg, sizes)["validation"] == 0 and budgets(cfg, sizes)["train"] == 1
    cfg.sdg.target_pairs = 80
    assert budgets(cfg, Counter(train=80, probe=20)) == {"train": 80, "validation": 0, "probe": 4}
    cfg.sdg.target_pairs = 0
    assert budgets(cfg, sizes)["train"] == budgets(cfg, sizes)["validation"] == 100


def test_an_anchor_whose_question_fails_the_round_trip_gets_another_question(ws) -> None:
    """sdg.rewrites: the greedy question is not answered back (round trip), the sampled rewrite is; both are
    recorded as candidates with their filter outcomes, and only the rewrite is kept."""
    from appliance.sdg.generate import generate_pairs

    asked: dict[str, str] = {}

    def script(prompt: str, params, schema) -> str:
        if "Excerpt:" in prompt:
            words, answer = excerpt_words(prompt)
            if params.temperature == 0:
                return f"Regarding {words}, what is stated?"  # never answered back
            question = f"Which value is given for {words}?"
            asked[question] = answer
            return question
        return asked.get(prompt.rsplit("Question: ", 1)[-1].split("\n")[0].strip(), "I don't know")

    summary = generate_pairs(open_workspace(ws, ["sdg.target_pairs=4", "sdg.probe_questions=0", "sdg.kinds=fact"]),
                             generator=FakeGenerator(script))
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    rows = con.execute("""SELECT p.chunk_id, p.answer, p.question, p.attempts, f.filter, f.passed FROM sdg_pairs p
                          JOIN sdg_filters f USING (run_id, pair_id) WHERE run_id = ? AND f.filter = 'round_trip'""",
                       [summary["run_id"]]).fetchall()
    con.close()
    first = {(c, a) for c, a, q, n, _, passed in rows if q.startswith("Regarding") and not passed and n == 1}
    again = {(c, a) for c, a, q, n, _, passed in rows if q.startswith("Which value") and passed and n > 1}
    assert summary["kept"] >= 1 and again and again <= first  # every kept rewrite answers an anchor that failed


def test_a_question_that_asks_what_a_sentence_does_not_say_is_rewritten_from_its_verb(ws) -> None:
    """framing + sdg.rewrites: the greedy question asks "What is <subject>?" of a whole sentence that says what its
    subject does; the rewrite goes on from the sentence's own opening ("What does", "How is"), and is kept."""
    from appliance.sdg.generate import generate_pairs

    asked: dict[str, str] = {}

    def script(prompt: str, params, schema) -> str:
        if "Excerpt:" in prompt:
            _, answer = excerpt_words(prompt)
            opening, subject = prompt.rsplit('{"question": "', 1)[1], " ".join(answer.split()[:3])
            if params.temperature == 0:
                return f"What is {subject}?"
            question = f"{opening} {subject} stand for?"
            asked[" ".join(question.split())] = answer
            return question[len(opening):]
        return asked.get(prompt.rsplit("Question: ", 1)[-1].split("\n")[0].strip(), "I don't know")

    summary = generate_pairs(open_workspace(ws, ["sdg.target_pairs=4", "sdg.probe_questions=0", "sdg.kinds=fact"]),
                             generator=FakeGenerator(script))
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    rows = con.execute("""SELECT p.chunk_id, p.answer, p.question, p.attempts, f.filter, f.passed FROM sdg_pairs p
                          JOIN sdg_filters f USING (run_id, pair_id) WHERE run_id = ?""", [summary["run_id"]]).fetchall()
    con.close()
    misframed = {(c, a) for c, a, q, n, f, passed in rows if f == "framing" and not passed and n == 1}
    openings = {"What does", "What do", "What can", "How is", "How are", "How must"}
    kept = {(c, a) for c, a, q, n, f, passed in rows if f == "round_trip" and passed and " ".join(q.split()[:2]) in
            openings}  # (an anchor whose first question failed the round trip gets a rewrite with no opening)
    assert misframed and kept and kept <= misframed


def test_two_rows_with_the_same_cell_and_question_are_two_pairs() -> None:
    """A pair's id covers its evidence: the type code table's rows 'i' and 'l' both hold "int", and the writer asked
    the same question of both; one id for the two made their filter outcomes indistinguishable in the audit store."""
    from appliance.sdg.generate import _candidate

    chunk = {"chunk_id": "c1", "doc_id": "d", "file_name": "array.html", "section": "Type codes"}
    a, b = (_candidate("table", "Which Python type does a type code give?", "int", row, "", row, chunk, "train",
                       "t", "prompt", "raw", 1) for row in ("'i' signed int int 2", "'l' signed long int 4"))
    assert a.pair_id != b.pair_id
