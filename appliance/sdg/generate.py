"""`appliance sdg generate`: candidate question-answer pairs from the indexed chunks, filtered, on the record.

For each chunk, in an order that spreads over every document and section (anchors.spread): answers are chosen in
code (anchors.py); the local generator writes only the question for each (its reply is prefilled with
`{"question": "` and stops at the closing quote, so its shape is fixed without grammar sampling, measured 5x slower
here); a reply that is not a question is asked again with another seed (sdg.attempts), then counted as a failure
(an `sdg_failure` event), never dropped silently. Every candidate goes through the filters (filters.py), cheapest
first; each outcome is a row of sdg_filters. A chunk's pairs, outcomes and its `sdg_chunk_done` event are written
in one transaction: a killed run goes on with `--resume RUN_ID` after its last whole chunk.

Documents are split once, by a hash of their id and sdg.seed: training, validation (sdg.validation_share) and the
abstention probe (sdg.probe_share, never trained on). Only chunks without access groups are used unless --groups
names them: what a model is trained on, every user of that model can draw out of it.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.answering import Answerer, Context, Passage
from appliance.config import Config
from appliance.errors import UsageError
from appliance.evaluation.golden import Question, load_questions
from appliance.llm import Generator, SamplingParams, load_generator
from appliance.llm.prompts import PAIR_WRITER, QUESTION_WRITER
from appliance.progress import Progress
from appliance.resume import find_resumable, process_event
from appliance.sdg.anchors import Anchor, anchors_of, spread
from appliance.sdg.filters import (FILTERS, Contamination, Duplicates, Outcome, check_format, check_grounding,
                                   check_support, round_trip_outcome)
from appliance.workspace import Workspace

STAGE = "sdg generate"
RESUME_SECTIONS = ("models", "llm", "retrieval", "eval", "sdg")
SPLITS = ("train", "validation", "probe")


@dataclass(frozen=True)
class Candidate:
    """A written pair before filtering, with where it comes from and how it was written."""

    pair_id: str
    kind: str
    question: str
    answer: str
    evidence: str
    hint: str
    chunk_id: str
    doc_id: str
    file_name: str
    section: str
    split: str
    template_id: str
    prompt_sha256: str
    raw_output: str
    attempts: int


def split_of(doc_id: str, cfg: Config) -> str:
    """The split a document belongs to, fixed by its id and sdg.seed (no document is on two sides)."""
    u = int(hashlib.sha256(f"{cfg.sdg.seed}:{doc_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < cfg.sdg.probe_share:
        return "probe"
    return "validation" if u < cfg.sdg.probe_share + cfg.sdg.validation_share else "train"


def _budget_of(split: str) -> str:
    """Training and validation pairs share sdg.max_candidates; the probe has its own sdg.probe_questions."""
    return "probe" if split == "probe" else "train"


def _where(chunk: dict[str, Any]) -> str:
    return chunk["file_name"] + (f" — {chunk['section']}" if chunk["section"] else "")


class Writer:
    """Asks the generator for the question of an anchor (or a whole free-form pair), with bounded retries."""

    def __init__(self, gen: Generator, cfg: Config) -> None:
        self.gen = gen
        self.cfg = cfg

    def _ask(self, prompt: str, stop: tuple[str, ...], attempt: int) -> str:
        params = SamplingParams(temperature=0.0 if attempt == 0 else 0.7, top_p=0.95, max_tokens=80,
                                seed=self.cfg.sdg.seed + attempt)
        return self.gen.generate(prompt, params, stop).text

    def write(self, anchor: Anchor, chunk: dict[str, Any], split: str) -> Candidate | str:
        """The candidate, or why no question could be had (after sdg.attempts tries)."""
        hint = f"\n(The answer is {anchor.hint}.)" if anchor.hint else ""
        prompt, _ = self.gen.render(QUESTION_WRITER, where=_where(chunk), passage=chunk["text"],
                                    answer=anchor.answer, hint=hint)
        prefill = '{"question": "'
        last = ""
        for attempt in range(self.cfg.sdg.attempts):
            last = self._ask(prompt + prefill, ('"', "\n"), attempt)
            question = " ".join(last.split())
            if question.endswith("?") and len(question.split()) >= 3:
                return _candidate(anchor.kind, question, anchor.answer, anchor.evidence, anchor.hint, chunk, split,
                                  QUESTION_WRITER.id, prompt, prefill + last, attempt + 1)
        return f"no question after {self.cfg.sdg.attempts} attempts (last reply {last[:80]!r})"

    def write_free(self, chunk: dict[str, Any], split: str) -> Candidate | str:
        """A pair the model writes whole: question and answer (its support is checked by the filters)."""
        prompt, _ = self.gen.render(PAIR_WRITER, where=_where(chunk), passage=chunk["text"])
        prefill = '{"question": "'
        last = ""
        for attempt in range(self.cfg.sdg.attempts):
            last = self._ask(prompt + prefill, ('"}', "\n\n"), attempt)
            try:
                obj = json.loads(prefill + last + '"}')
                question, answer = " ".join(str(obj["question"]).split()), " ".join(str(obj["answer"]).split())
            except (ValueError, KeyError, TypeError):
                continue
            if question.endswith("?") and answer:
                return _candidate("free", question, answer, "", "", chunk, split, PAIR_WRITER.id, prompt,
                                  prefill + last, attempt + 1)
        return f"no parseable pair after {self.cfg.sdg.attempts} attempts (last reply {last[:80]!r})"


def _candidate(kind: str, question: str, answer: str, evidence: str, hint: str, chunk: dict[str, Any], split: str,
               template_id: str, prompt: str, raw: str, attempts: int) -> Candidate:
    pair_id = hashlib.sha256(f"{chunk['chunk_id']}\n{kind}\n{answer}\n{question}".encode()).hexdigest()[:16]
    return Candidate(pair_id, kind, question, answer, evidence, hint, chunk["chunk_id"], chunk["doc_id"],
                     chunk["file_name"], chunk["section"], split, template_id,
                     hashlib.sha256(prompt.encode()).hexdigest(), raw, attempts)


class Filters:
    """Runs the filters on a chunk's candidates, cheapest first; a pair stops at its first failed filter."""

    def __init__(self, cfg: Config, answerer: Answerer, golden: list[Question]) -> None:
        self.cfg = cfg
        self.answerer = answerer
        assert answerer.retriever is not None
        self.embedder = answerer.retriever.embedder
        self.contamination = Contamination(golden, self.embedder, cfg.sdg)
        self.duplicates = Duplicates(cfg.sdg.duplicate_jaccard, cfg.sdg.seed + 1)

    def run(self, c: Candidate, chunk: dict[str, Any], vector: Any) -> tuple[Candidate, list[Outcome]]:
        s = self.cfg.sdg
        done: list[Outcome] = []
        support, sentence = check_support(c.kind, c.answer, chunk["text"])
        if c.kind == "free":
            c = Candidate(**(asdict(c) | {"evidence": sentence}))
        steps = [lambda: check_format(c.question, c.answer, s),
                 lambda: check_grounding(c.question, c.evidence or chunk["text"], _where(chunk) + " " + c.hint, s),
                 lambda: support,
                 lambda: self.contamination.check(c.question, vector),
                 lambda: self.duplicates.check(c.pair_id, c.question),
                 lambda: self._round_trip(c, chunk)]
        for step in steps:
            outcome = step()
            done.append(outcome)
            if not outcome.passed:
                break
        else:
            self.duplicates.keep(c.pair_id, c.question)
        return c, done

    def _round_trip(self, c: Candidate, chunk: dict[str, Any]) -> Outcome:
        passage = Passage(chunk["chunk_id"], chunk["text"], chunk["file_name"], chunk["section"], chunk["page_start"])
        result = self.answerer.generate(c.question, Context("oracle", [passage]), "single")
        return round_trip_outcome(c.kind, c.answer, c.evidence, result.answer)


def golden_questions(ws: Workspace, extra: list[Path]) -> tuple[list[Question], list[str]]:
    """Every golden question this workspace has evaluated with (the questions files its eval, retrieval and gold
    check runs name, where they still exist) and those of `extra` files: what pairs must not come close to."""
    from appliance.audit import AuditStore

    files = {str(p) for p in extra}
    with AuditStore(ws.audit_path) as store:
        for info in store.runs(("eval-answers", "eval-retrieval", "gold-check")):
            for e in store.events(info.run_id, "eval_answers_start", "retrieval_summary", "gold_check_summary"):
                if e.get("questions_file"):
                    files.add(e["questions_file"])
    questions, used = [], []
    for f in sorted(files):
        if Path(f).is_file():
            used.append(f)
            questions += [q for q in load_questions(Path(f)) if not q.extra.get("synthetic")]
    return questions, used


def _tables(path: str, cfg: Config) -> list[tuple[tuple[str, ...], ...]]:
    """The tables of a source file with their cells (the index keeps a row's text, not its cells)."""
    from appliance.ingest.partition import SkipFile, partition_file

    try:
        return [e.rows for e in partition_file(Path(path), cfg.ingest).elements if e.kind == "Table" and e.rows]
    except (SkipFile, OSError):
        return []


def generate_pairs(ws: Workspace, groups: list[str] | None = None, golden: list[Path] | None = None,
                   progress: Progress | None = None, command: str = "", resume: str | None = None,
                   generator: Generator | None = None) -> dict[str, Any]:
    """Write and filter candidate pairs from the index; return the run's summary (counts, survival, pairs/min)."""
    progress = progress or Progress()
    cfg = ws.config
    r = find_resumable(ws, resume, "sdg-generate", "sdg_start", RESUME_SECTIONS, "sdg_chunk_done") if resume else None
    groups = r.start["groups"] if r else sorted(groups or [])
    gen = generator or load_generator(ws)
    if r and gen.identity.model_sha256 != r.start["model_sha256"]:
        raise UsageError(f"model {gen.identity.model} is not the file run {r.run_id} started with")
    answerer = Answerer.open(ws, gen, need_index=True, empty_hint=" (synthetic data is made from indexed chunks)")
    assert answerer.retriever is not None
    chunks = [c for c, _ in answerer.retriever.visible(groups)]
    if not chunks:
        raise UsageError("no chunks without access groups to make pairs from (use --groups to include documents "
                         "of those groups; every user of a model trained on them can draw them out)")
    gold, gold_files = golden_questions(ws, golden or [])
    writer, filters = Writer(gen, cfg), Filters(cfg, answerer, gold)
    order = spread(chunks)
    done_chunks = {e["chunk_id"] for e in r.done} if r else set()
    kept: Counter[str] = Counter()
    for e in r.done if r else []:
        kept[_budget_of(e["split"])] += e["kept"]
    if r:  # pairs kept before the kill count against duplicates again
        from appliance.audit import AuditStore

        with AuditStore(ws.audit_path) as store:
            passed = {f["pair_id"] for f in store.rows("sdg_filters", r.run_id, filter="round_trip", passed=True)}
            for p in store.rows("sdg_pairs", r.run_id):
                if p["pair_id"] in passed:
                    filters.duplicates.keep(p["pair_id"], p["question"])
    budget = {"train": cfg.sdg.target_pairs or len(order), "probe": cfg.sdg.probe_questions}
    t0 = time.perf_counter()
    progress.note(f"{len(order)} chunks ({len({c['doc_id'] for c in chunks})} documents); golden questions guarded "
                  f"against: {len(gold)} from {len(gold_files)} file(s); generator {gen.identity.model}", STAGE)
    with ws.resumed_run(r.run_id) if r else ws.run("sdg-generate", command) as run:
        if r:
            run.event("run_resumed", **process_event(command, chunks_done=len(done_chunks)))
        else:
            run.event("sdg_start", **process_event(command, groups=groups, model=gen.identity.model,
                                                   model_sha256=gen.identity.model_sha256, golden_files=gold_files,
                                                   golden_questions=len(gold), chunks=len(order)))
        run.flush()
        progress.note(f"run {run.run_id}: if it is stopped, `appliance sdg generate --resume {run.run_id}` goes on "
                      f"after the last whole chunk", STAGE)
        progress.start(STAGE, len(order), "chunks", done=len(done_chunks))
        tables: dict[str, list] = {}
        for n, chunk in enumerate(order, 1):
            split = split_of(chunk["doc_id"], cfg)
            if chunk["chunk_id"] in done_chunks:
                continue
            if kept[_budget_of(split)] >= budget[_budget_of(split)]:
                continue
            progress.check()
            is_table = "Table" in list(chunk["element_types"] or [])
            if is_table and chunk["path"] not in tables:
                tables[chunk["path"]] = _tables(chunk["path"], cfg)
            made = _chunk_pairs(run, writer, filters, chunk, split, tables.get(chunk["path"], []) if is_table else [],
                                cfg)
            kept[_budget_of(split)] += made
            run.event("sdg_chunk_done", chunk_id=chunk["chunk_id"], split=split, kept=made)
            run.flush()
            progress.advance(STAGE, n, len(order), "chunks", f"{chunk['file_name']}: kept {made}; "
                             f"train+validation {kept['train']}, probe {kept['probe']}")
        summary = summarise(ws, run.run_id) | {"seconds": round(time.perf_counter() - t0, 1)}
        summary["pairs_per_minute"] = round(summary["candidates"] / max(summary["seconds"], 1e-9) * 60, 2)
        run.event("sdg_summary", **summary)
        summary["run_id"] = run.run_id
    return summary


def _chunk_pairs(run: Any, writer: Writer, filters: Filters, chunk: dict[str, Any], split: str,
                 tables: list, cfg: Config) -> int:
    """Write, filter and record the pairs of one chunk; the number kept (every filter passed)."""
    s = cfg.sdg
    free = "free" in s.kinds and int(hashlib.sha256(f"{s.seed}:free:{chunk['chunk_id']}".encode()).hexdigest()[:8],
                                     16) / 0xFFFFFFFF < s.free_share
    written = ([writer.write_free(chunk, split)] if free else
               [writer.write(a, chunk, split) for a in anchors_of(chunk, s.kinds, s.per_chunk, s.seed, tables)])
    for failure in (w for w in written if isinstance(w, str)):
        run.event("sdg_failure", chunk_id=chunk["chunk_id"], reason=failure)
    candidates = [w for w in written if isinstance(w, Candidate)]
    vectors = filters.embedder.embed([c.question for c in candidates]) if candidates else []
    kept = 0
    for c, vector in zip(candidates, vectors):
        c, outcomes = filters.run(c, chunk, vector)
        run.append("sdg_pairs", **asdict(c), generator_model=writer.gen.identity.model,
                   generator_sha256=writer.gen.identity.model_sha256)
        for o in outcomes:
            run.append("sdg_filters", pair_id=c.pair_id, filter=o.filter, passed=o.passed, score=o.score,
                       threshold=o.threshold, detail=o.detail)
        kept += len(outcomes) == len(FILTERS) and all(o.passed for o in outcomes)
    return kept


def summarise(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Counts of a generation run: candidates and failures, survival after each filter in order, kept pairs by
    split and kind."""
    from appliance.audit import AuditStore

    with AuditStore(ws.audit_path) as store:
        pairs = store.rows("sdg_pairs", run_id)
        outcomes = store.rows("sdg_filters", run_id)
        failures = len(store.events(run_id, "sdg_failure"))
    by_pair: dict[str, dict[str, bool]] = {}
    for o in outcomes:
        by_pair.setdefault(o["pair_id"], {})[o["filter"]] = o["passed"]
    survival, alive = [], {p["pair_id"] for p in pairs}
    for f in FILTERS:
        alive = {p for p in alive if by_pair.get(p, {}).get(f)}
        survival.append({"filter": f, "surviving": len(alive)})
    kept = [p for p in pairs if p["pair_id"] in alive]
    return {"candidates": len(pairs), "failures": failures, "survival": survival, "kept": len(kept),
            "kept_by_split": dict(Counter(p["split"] for p in kept)),
            "kept_by_kind": dict(Counter(p["kind"] for p in kept)),
            "documents": len({p["doc_id"] for p in kept}), "sections": len({(p["doc_id"], p["section"]) for p in kept})}
