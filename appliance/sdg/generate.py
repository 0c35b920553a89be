"""`appliance sdg generate`: candidate question-answer pairs from the indexed chunks, filtered, on the record.

For each chunk, in an order that spreads over every document and section (anchors.spread): answers are chosen in
code (anchors.py); the local generator writes only the question for each (its reply is prefilled with
`{"question": "` and stops at the closing quote, so its shape is fixed without grammar sampling, measured 1.7x slower
here); a reply that is not a question is asked again with another seed (sdg.attempts), then counted as a failure
(an `sdg_failure` event), never dropped silently. Every candidate goes through the filters (filters.py, in their
order); each outcome is a row of sdg_filters. A chunk's pairs, outcomes and its `sdg_chunk_done` event are written
in one transaction: a killed run goes on with `--resume RUN_ID` after its last whole chunk.

Documents are split once, by a hash of their file name and sdg.seed: training, validation (sdg.validation_share)
and the abstention probe (sdg.probe_share, never trained on); a corpus too small for every split to get a document
(one long manual) is split by section instead (split_unit). Only chunks without access groups are used unless --groups
names them: what a model is trained on, every user of that model can draw out of it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.answering import Answerer, Context, Passage
from appliance.config import Config
from appliance.errors import UsageError
from appliance.evaluation.goldcheck import judge_gold
from appliance.evaluation.golden import Question, load_questions
from appliance.llm import Generation, Generator, SamplingParams, load_generator
from appliance.llm.prompts import PAIR_WRITER, QUESTION_EXAMPLES, QUESTION_WRITER
from appliance.progress import Progress
from appliance.resume import find_resumable, process_event
from appliance.sdg.anchors import Anchor, anchors_of, chunk_key, question_opening, spread
from appliance.sdg.filters import (FILTERS, MISFRAMED, Contamination, Duplicates, Outcome, check_format,
                                   check_framing, check_grounding, check_support, findable_outcome,
                                   round_trip_outcome)
from appliance.workspace import Workspace

STAGE = "sdg generate"
RESUME_SECTIONS = ("models", "llm", "retrieval", "eval", "sdg")
FREE_MAX_TOKENS = 200  # a free-form pair's question and an answer of up to sdg.max_answer_words (60: ~80 tokens)
SPLITS = ("train", "validation", "probe")
# filters whose failure is the question's, not the answer's: the anchor is worth another question (sdg.rewrites)
REWRITTEN = ("framing", "findable", "round_trip")


@dataclass(frozen=True)
class Candidate:
    """A written pair before filtering, with where it comes from and how it was written."""

    pair_id: str
    kind: str
    question: str
    answer: str
    evidence: str
    hint: str
    excerpt: str
    chunk_id: str
    doc_id: str
    file_name: str
    section: str
    split: str
    template_id: str
    prompt_sha256: str
    raw_output: str
    attempts: int


def split_of(unit: str, cfg: Config) -> str:
    """The split a unit (a document's file name, or a file name and section) belongs to, fixed by its name and
    sdg.seed (no unit is on two sides; the same corpus copied elsewhere, or re-ingested from another folder, splits
    the same way)."""
    u = int(hashlib.sha256(f"{cfg.sdg.seed}:{unit}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < cfg.sdg.probe_share:
        return "probe"
    return "validation" if u < cfg.sdg.probe_share + cfg.sdg.validation_share else "train"


SPLIT_RULE = 2   # bump when the way pairs are split changes: the ladder's sdg key holds it, so old pairs are not reused


def split_unit(chunks: list[dict[str, Any]], cfg: Config) -> str:
    """`document` when splitting the corpus by document gives every split a document (training, and validation
    and probe where their shares are set); else `section`: a corpus of one long manual, or a few documents, is split
    by (document, section) so that validation loss and the held-out probe still exist, no section on two sides."""
    wanted = {"train"} | {s for s, share in (("validation", cfg.sdg.validation_share),
                                              ("probe", cfg.sdg.probe_share)) if share > 0}
    return "document" if wanted <= {split_of(c["file_name"], cfg) for c in chunks} else "section"


def chunk_split(chunk: dict[str, Any], unit: str, cfg: Config) -> str:
    """The split of a chunk's pairs under `unit` (split_unit)."""
    return split_of(chunk["file_name"] if unit == "document" else f"{chunk['file_name']}#{chunk['section']}", cfg)


ASSUMED_SURVIVAL = 0.43     # share of candidates kept, measured on the sample corpus with the default model
MEASURED_FROM = 50          # candidates this workspace must have made before their survival replaces the assumed one
ASSUMED_QUESTION = 24       # tokens of a written question (and of a round-trip answer)


def _survival(ws: Workspace) -> tuple[float, str]:
    """The share of candidates that pass every filter, and where it comes from: this workspace's own candidates
    (its corpus and rules) once there are MEASURED_FROM of them, else ASSUMED_SURVIVAL (on the devset the samples'
    0.43 was 0.245: the estimate said 33 min for a 56-min run)."""
    from appliance.audit import AuditStore
    from appliance.sdg.dataset import pair_states

    with AuditStore(ws.audit_path) as store:
        states = pair_states(store)
    if len(states) < MEASURED_FROM:
        return ASSUMED_SURVIVAL, "as measured on the samples"
    return max(sum(p["passed"] for p in states), 1) / len(states), \
        f"as measured on this workspace's {len(states)} earlier candidates"


def _estimate(gen: Generator, order: list[dict[str, Any]], cfg: Config, budget: dict[str, int],
              done: int, survival: tuple[float, str]) -> dict[str, Any]:
    """How long the run will take: candidates needed (the kept pairs wanted / the survival, at most what the chunks
    give) x the tokens of writing and round-tripping one, at the speed measured now on a writer prompt of this
    corpus."""
    from appliance.evaluation.estimate import measure_speed

    share, source = survival
    candidates = min(int((sum(budget.values()) - done) / share) + 1, len(order) * cfg.sdg.per_chunk)
    want = min(sum(budget.values()) - done, int(candidates * share))
    sample = next((a for c in order[:20] for a in anchors_of(c, cfg.sdg.kinds, 1, cfg.sdg.seed)), None)
    excerpt = sample.excerpt if sample else order[0]["text"][:400]
    prompt, _ = gen.render(QUESTION_WRITER, where=_where(order[0]), passage=excerpt, answer="x", hint="")
    pp, tg = measure_speed(gen, prompt)
    # writing: the excerpt and answer after the shared instructions; round trip: the excerpt under CONTEXT
    per = (2 * (gen.count_tokens(excerpt) + 40)) / pp + 2 * ASSUMED_QUESTION / tg
    seconds = round(candidates * per, 1)
    return {"candidates": candidates, "pairs_wanted": want, "assumed_survival": round(share, 4),
            "survival_source": source, "prompt_tokens_per_s": round(pp, 1), "generated_tokens_per_s": round(tg, 2),
            "seconds": seconds,
            "text": f"estimate: ~{candidates} candidates for {want} pairs (assuming {share:.0%} survive, {source}); "
                    f"at the measured {pp:.0f} prompt tok/s and {tg:.1f} generated tok/s: about {seconds / 60:.0f} min"}


def budgets(cfg: Config, chunks: Counter[str]) -> dict[str, int]:
    """The pairs each split stops at: sdg.target_pairs divided between training and validation in the proportion of
    their chunks (`chunks`: chunks per split; validation at least 1 where it has any), each stopping on its own
    count, so that chunks met early in the corpus cannot fill the whole target with training pairs and leave
    validation without any; the probe stops at sdg.probe_questions. By chunks, not by sdg.validation_share: a split
    by document hash is lumpy (on the devset the validation documents, share 0.1, hold 30 % of the chunks), and a
    target divided by the shares asked training for more pairs than its chunks gave while validation stopped at 49.
    sdg.target_pairs 0: every chunk of both."""
    s, total = cfg.sdg, sum(chunks.values())
    if not s.target_pairs:
        return {"train": total, "validation": total, "probe": s.probe_questions}
    pool = chunks["train"] + chunks["validation"]
    validation = math.ceil(s.target_pairs * chunks["validation"] / pool) if chunks["validation"] else 0
    validation = min(validation, s.target_pairs - 1) if s.target_pairs > 1 else 0
    return {"train": s.target_pairs - validation, "validation": validation, "probe": s.probe_questions}


def _where(chunk: dict[str, Any]) -> str:
    """Where a chunk sits, as the question writer is told: its section path, led by its document's title where the
    path does not start with it (see with_titles)."""
    section = chunk["section"].replace("¶", "").strip()
    title = chunk.get("title") or re.sub(r"[_\-.]+", " ", Path(chunk["file_name"]).stem)
    return section if section.startswith(title) else f"{title} > {section}" if section else title


def with_titles(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each chunk with its document's title: the first element its chunks' section paths most often share (not a
    page's navigation block, which comes first but once), else the file's name in words."""
    firsts: dict[str, Counter[str]] = {}
    for c in chunks:
        head = c["section"].split(" > ")[0].replace("¶", "").strip()
        if head:
            firsts.setdefault(c["doc_id"], Counter())[head] += 1
    titles = {doc: counts.most_common(1)[0][0] for doc, counts in firsts.items()}
    return [c | {"title": titles.get(c["doc_id"], "")} for c in chunks]


class Writer:
    """Asks the generator for the question of an anchor (or a whole free-form pair), with bounded retries."""

    def __init__(self, gen: Generator, cfg: Config) -> None:
        self.gen = gen
        self.cfg = cfg

    def _ask(self, prompt: str, stop: tuple[str, ...], attempt: int, max_tokens: int = 80) -> Generation:
        params = SamplingParams(temperature=0.0 if attempt == 0 else 0.7, top_p=0.95, max_tokens=max_tokens,
                                seed=self.cfg.sdg.seed + attempt)
        return self.gen.generate(prompt, params, stop)

    def write(self, anchor: Anchor, chunk: dict[str, Any], split: str, rewrite: int = 0,
              opening: str = "") -> Candidate | str:
        """The candidate, or why no question could be had (after sdg.attempts tries); `rewrite` n > 0 asks for
        another question for the same anchor (sampled, with seeds no earlier try used), `opening` the words it
        must start with (written into the reply for the model to go on from)."""
        hint = f"\n(The answer says {anchor.hint}.)" if anchor.hint else ""
        messages = QUESTION_WRITER.messages(where=_where(chunk), passage=anchor.excerpt or chunk["text"],
                                            answer=anchor.answer, hint=hint)
        shots = [m for fields, reply in QUESTION_EXAMPLES
                 for m in (QUESTION_WRITER.messages(**fields)[1],
                           {"role": "assistant", "content": json.dumps({"question": reply})})]
        prompt, _ = self.gen.render_messages([messages[0], *shots, messages[1]])
        prefill = '{"question": "' + opening
        last = ""
        tries = self.cfg.sdg.attempts
        for attempt in range(rewrite * tries, (rewrite + 1) * tries):
            last = self._ask(prompt + prefill, ('"', "\n"), attempt).text
            question = " ".join(f"{opening} {last}".split())  # the model may go on without a space
            if question.endswith("?") and len(question.split()) >= 3:
                return _candidate(anchor.kind, question, anchor.answer, anchor.evidence, anchor.hint, anchor.excerpt,
                                  chunk, split, QUESTION_WRITER.id, prompt, prefill + last, attempt + 1)
        return f"no question after {self.cfg.sdg.attempts} attempts (last reply {last[:80]!r})"

    def write_free(self, chunk: dict[str, Any], split: str) -> Candidate | str:
        """A pair the model writes whole: question and answer (its support is checked by the filters); a reply cut
        off at its token limit is a failed attempt, not an answer ending mid-sentence."""
        prompt, _ = self.gen.render(PAIR_WRITER, where=_where(chunk), passage=chunk["text"])
        prefill = '{"question": "'
        last = ""
        for attempt in range(self.cfg.sdg.attempts):
            reply = self._ask(prompt + prefill, ('"}', "\n\n"), attempt, FREE_MAX_TOKENS)
            last = reply.text
            if reply.finish_reason == "length":
                continue
            try:
                obj = json.loads(prefill + last + '"}')
                question, answer = " ".join(str(obj["question"]).split()), " ".join(str(obj["answer"]).split())
            except (ValueError, KeyError, TypeError):
                continue
            if question.endswith("?") and answer:
                return _candidate("free", question, answer, "", "", "", chunk, split, PAIR_WRITER.id, prompt,
                                  prefill + last, attempt + 1)
        return f"no parseable pair after {self.cfg.sdg.attempts} attempts (last reply {last[:80]!r})"


def _candidate(kind: str, question: str, answer: str, evidence: str, hint: str, excerpt: str, chunk: dict[str, Any],
               split: str, template_id: str, prompt: str, raw: str, attempts: int) -> Candidate:
    # the evidence too: two rows of a table with the same cell can get the same question (both are recorded)
    pair_id = hashlib.sha256(f"{chunk['chunk_id']}\n{kind}\n{answer}\n{question}\n{evidence}".encode()).hexdigest()[:16]
    return Candidate(pair_id, kind, question, answer, evidence, hint, excerpt, chunk["chunk_id"], chunk["doc_id"],
                     chunk["file_name"], chunk["section"], split, template_id,
                     hashlib.sha256(prompt.encode()).hexdigest(), raw, attempts)


class Filters:
    """Runs the filters on a chunk's candidates in FILTERS order; a pair stops at its first failed filter."""

    def __init__(self, cfg: Config, answerer: Answerer, golden: list[Question], judge: Generator | None = None) -> None:
        self.cfg = cfg
        self.answerer = answerer
        self.judge = judge
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
            if support.passed and self.judge is not None:
                support = self._judged_support(c, chunk)
        steps = [lambda: self.contamination.check(c.question, vector),
                 lambda: check_format(c.question, c.answer, s),
                 lambda: check_framing(c.question, c.answer, c.kind, chunk["section"], c.hint, c.evidence),
                 lambda: check_grounding(c.question, c.evidence or chunk["text"], _where(chunk) + " " + c.hint, s),
                 lambda: support,
                 lambda: self.duplicates.check(c.pair_id, c.question),
                 lambda: self._findable(c, chunk),
                 lambda: self._round_trip(c, chunk)]
        for step in steps:
            outcome = step()
            done.append(outcome)
            if not outcome.passed:
                break
        else:
            self.duplicates.keep(c.pair_id, c.question)
        return c, done

    def _judged_support(self, c: Candidate, chunk: dict[str, Any]) -> Outcome:
        """A free-form answer read against its chunk by a judge model other than the writer (every one of its
        eval.judge_repeats calls must say "supported")."""
        assert self.judge is not None
        q = Question(id=c.pair_id, question=c.question, answer=c.answer, aliases=(), source_files=(),
                     evidence=(c.evidence,), kind="fact")
        passage = Passage(chunk["chunk_id"], chunk["text"], chunk["file_name"], chunk["section"], chunk["page_start"])
        _, parsed = judge_gold(self.judge, q, c.answer, Context("oracle", [passage]).render(),
                               self.cfg.eval.judge_repeats, self.cfg.llm.seed)
        verdicts = [p["verdict"] for p in parsed]
        ok = all(v == "supported" for v in verdicts)
        return Outcome("support", ok, sum(v == "supported" for v in verdicts) / len(verdicts), 1.0,
                       f"judge {self.judge.identity.model}: {', '.join(verdicts)}")

    def _findable(self, c: Candidate, chunk: dict[str, Any]) -> Outcome:
        """The question through the product's retrieval, as a user entitled to the chunk would ask it under rag."""
        assert self.answerer.retriever is not None
        k = self.cfg.eval.context_k
        result = self.answerer.retriever.search(c.question, k=k, groups=list(chunk["groups"] or []))
        return findable_outcome(chunk["chunk_id"], chunk["text"], [(h.chunk_id, h.text) for h in result.hits], k)

    def _round_trip(self, c: Candidate, chunk: dict[str, Any]) -> Outcome:
        """The question asked of the generator with only its source: the excerpt it was written from (the
        evidence sentence, the table row as header: value lines, the step with its neighbours; the chunk for a
        free-form pair), under the product's own prompt. The excerpt, not the whole chunk: over a whole chunk the
        0.5B model's misreadings (a neighbouring row, another sentence's number - the very failures the training
        data is for) would throw away well-posed pairs; over its evidence, a failed round trip means the question
        does not ask for its answer."""
        text = c.excerpt or chunk["text"]
        passage = Passage(chunk["chunk_id"], text, chunk["file_name"], chunk["section"], chunk["page_start"])
        result = self.answerer.generate(c.question, Context("oracle", [passage]), "single")
        return round_trip_outcome(c.kind, c.answer, c.evidence, result.answer)


def _kept_questions(ws: Workspace) -> list[tuple[str, str]]:
    """(pair id, question) of every pair of this workspace that passed its last filter."""
    from appliance.audit import AuditStore

    with AuditStore(ws.audit_path) as store:
        return store.con.execute(
            """SELECT DISTINCT p.pair_id, p.question FROM sdg_pairs p JOIN sdg_filters f
               ON f.run_id = p.run_id AND f.pair_id = p.pair_id AND f.filter = ? AND f.passed""",
            [FILTERS[-1]]).fetchall()


def golden_questions(ws: Workspace, extra: list[Path]) -> tuple[list[Question], list[str]]:
    """Every golden question this workspace has evaluated with or guarded against (the questions files its eval,
    retrieval, gold check and generation runs name, where they still exist) and those of `extra` files: what pairs
    must not come close to."""
    from appliance.audit import AuditStore

    files = {str(p) for p in extra}
    with AuditStore(ws.audit_path) as store:
        for info in store.runs(("eval-answers", "eval-retrieval", "gold-check", "sdg-generate")):
            for e in store.events(info.run_id, "eval_answers_start", "retrieval_summary", "gold_check_summary",
                                  "sdg_start"):
                files.update(f for f in [e.get("questions_file"), *e.get("golden_files", [])] if f)
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
    chunks = with_titles([c for c, _ in answerer.retriever.visible(groups)])
    if not chunks:
        raise UsageError("no chunks without access groups to make pairs from (use --groups to include documents "
                         "of those groups; every user of a model trained on them can draw them out)")
    gold, gold_files = golden_questions(ws, golden or [])
    judge = None
    if cfg.sdg.judge_model and "free" in cfg.sdg.kinds:
        if ws.models.get(cfg.sdg.judge_model).name == gen.identity.model:
            raise UsageError(f"sdg.judge_model {cfg.sdg.judge_model!r} is the writer itself; name another model "
                             f"(or \"\" for none)")
        judge = load_generator(ws, cfg.sdg.judge_model)
    writer, filters = Writer(gen, cfg), Filters(cfg, answerer, gold, judge)
    order = spread(chunks)
    unit = r.start.get("split_unit", "document") if r else split_unit(chunks, cfg)  # a run keeps its first unit
    done_chunks = {e["chunk_id"] for e in r.done} if r else set()
    kept: Counter[str] = Counter()
    for e in r.done if r else []:
        kept[e["split"]] += e["kept"]
    for pair_id, question in _kept_questions(ws):  # this workspace's kept pairs (an earlier run's, or this one's
        filters.duplicates.keep(pair_id, question)  # before it was killed) count against duplicates
    splits = [chunk_split(c, unit, cfg) for c in order]
    budget = budgets(cfg, Counter(splits))
    estimate = _estimate(gen, order, cfg, budget, sum(kept.values()), _survival(ws))
    progress.note(estimate["text"], STAGE)
    t0 = time.perf_counter()
    progress.note(f"{len(order)} chunks ({len({c['doc_id'] for c in chunks})} documents, split by {unit}); golden "
                  f"questions guarded against: {len(gold)} from {len(gold_files)} file(s); generator "
                  f"{gen.identity.model}", STAGE)
    with ws.resumed_run(r.run_id) if r else ws.run("sdg-generate", command) as run:
        if r:
            run.event("run_resumed", **process_event(command, chunks_done=len(done_chunks)))
        else:
            run.event("sdg_start", **process_event(command, groups=groups, model=gen.identity.model,
                                                   model_sha256=gen.identity.model_sha256, golden_files=gold_files,
                                                   golden_questions=len(gold), chunks=len(order),
                                                   split_unit=unit))
        run.event("sdg_estimate", **{k: v for k, v in estimate.items() if k != "text"})
        run.flush()
        progress.note(f"run {run.run_id}: if it is stopped, `appliance sdg generate --resume {run.run_id}` goes on "
                      f"after the last whole chunk", STAGE)
        progress.start(STAGE, len(order), "chunks", done=len(done_chunks))
        tables: dict[str, list] = {}
        batch: list[tuple[int, dict[str, Any], str, list[Candidate | str]]] = []

        def finish() -> None:
            """Filter and record the written batch; a kill loses only the batch, which a resume does again."""
            made = _filter_and_record(run, writer, filters, [(ch, written) for _, ch, _, written in batch])
            for (m, ch, sp, _), k in zip(batch, made):
                kept[sp] += k
                run.event("sdg_chunk_done", chunk_id=ch["chunk_id"], split=sp, kept=k)
                progress.advance(STAGE, m, len(order), "chunks", f"{ch['file_name']}: kept {k}; "
                                 f"train {kept['train']}, validation {kept['validation']}, "
                                 f"probe {kept['probe']}")
            run.flush()  # the batch in one transaction
            batch.clear()

        for n, (chunk, split) in enumerate(zip(order, splits), 1):
            if chunk["chunk_id"] in done_chunks or kept[split] >= budget[split]:
                continue
            progress.check()
            if "Table" in (chunk["element_types"] or []) and chunk["path"] not in tables:
                tables[chunk["path"]] = _tables(chunk["path"], cfg)
            batch.append((n, chunk, split, _write(writer, chunk, split, tables.get(chunk["path"], []), cfg)))
            if len(batch) >= cfg.sdg.batch_chunks:
                finish()
        if batch:   # the last batch, also where the chunks after it were skipped (their split already full)
            finish()
        summary = summarise(ws, run.run_id) | {"seconds": round(time.perf_counter() - t0, 1),
                                                "estimated_seconds": estimate["seconds"]}
        minutes = max(summary["seconds"], 1e-9) / 60
        summary["pairs_per_minute"] = round(summary["candidates"] / minutes, 2)  # this process's own pace
        summary["kept_per_minute"] = round(summary["kept"] / minutes, 2)
        run.event("sdg_summary", **summary)
        summary["run_id"] = run.run_id
    return summary


def _write(writer: Writer, chunk: dict[str, Any], split: str, tables: list, cfg: Config) -> list[Candidate | str]:
    """The chunk's candidates (or, for each that could not be had, why): anchored questions, or one free-form
    pair for a sdg.free_share of the chunks. A whole-sentence fact's first question is the writer's own; starting
    it from the sentence's verb (the rewrite's opening) was measured on the devset: 19 % less time per chunk and 7 %
    more pairs kept, but 28 of 40 kept pairs read as good against 17 of 20 without it (same reader)."""
    s = cfg.sdg
    free = "free" in s.kinds and int(hashlib.sha256(f"{s.seed}:free:{chunk_key(chunk)}".encode()).hexdigest()[:8],
                                     16) / 0xFFFFFFFF < s.free_share
    if free:
        return [writer.write_free(chunk, split)]
    return [writer.write(a, chunk, split) for a in anchors_of(chunk, s.kinds, s.per_chunk, s.seed, tables)]


def _filter_and_record(run: Any, writer: Writer, filters: Filters,
                       batch: list[tuple[dict[str, Any], list[Candidate | str]]]) -> list[int]:
    """Filter a batch of chunks' candidates and record them with every outcome (and each failure); an anchored
    candidate that fails a filter in REWRITTEN gets another question, up to sdg.rewrites times (one that asked "What
    is X?" of what X does starts as question_opening says); the number kept of each chunk. The rewrites of the
    whole batch are written one after another, so the writer's prompt prefix stays in llama.cpp's cache."""
    for chunk, written in batch:
        for failure in (w for w in written if isinstance(w, str)):
            run.event("sdg_failure", chunk_id=chunk["chunk_id"], reason=failure)
    pending = [(n, w) for n, (_, written) in enumerate(batch) for w in written if isinstance(w, Candidate)]
    kept, seen = [0] * len(batch), {c.pair_id for _, c in pending}
    for rewrite in range(1, writer.cfg.sdg.rewrites + 2):
        vectors = filters.embedder.embed([c.question for _, c in pending]) if pending else []
        failed: list[tuple[int, Candidate, str]] = []
        for (n, c), vector in zip(pending, vectors):
            c, outcomes = filters.run(c, batch[n][0], vector)
            run.append("sdg_pairs", **asdict(c), generator_model=writer.gen.identity.model,
                       generator_sha256=writer.gen.identity.model_sha256)
            for o in outcomes:
                run.append("sdg_filters", pair_id=c.pair_id, filter=o.filter, passed=o.passed, score=o.score,
                           threshold=o.threshold, detail=o.detail)
            if (outcomes[-1].passed or outcomes[-1].filter not in REWRITTEN or rewrite > writer.cfg.sdg.rewrites
                    or c.kind == "free"):  # a free-form pair's answer is the model's own: not an anchor to keep
                kept[n] += outcomes[-1].filter == FILTERS[-1] and outcomes[-1].passed
            else:
                failed.append((n, c, question_opening(c.evidence) if outcomes[-1].detail.startswith(MISFRAMED) else ""))
        pending = []
        for n, c, opening in failed:
            chunk = batch[n][0]
            again = writer.write(Anchor(c.kind, c.answer, c.evidence, c.hint, c.chunk_id, c.excerpt), chunk,
                                 c.split, rewrite, opening)
            if isinstance(again, str) or again.pair_id in seen:
                run.event("sdg_failure", chunk_id=chunk["chunk_id"], reason=f"rewrite {rewrite} of pair {c.pair_id}: "
                          + (again if isinstance(again, str) else "the same question again"))
                continue
            pending.append((n, again))
            seen.add(again.pair_id)
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
    applied = {f for checks in by_pair.values() for f in checks}
    for f in (f for f in FILTERS if f in applied):  # a run made before a filter existed has no outcome of it
        alive = {p for p in alive if by_pair.get(p, {}).get(f)}
        survival.append({"filter": f, "surviving": len(alive)})
    kept = [p for p in pairs if p["pair_id"] in alive]
    return {"candidates": len(pairs), "failures": failures, "survival": survival, "kept": len(kept),
            "kept_by_split": dict(Counter(p["split"] for p in kept)),
            "kept_by_kind": dict(Counter(p["kind"] for p in kept)),
            "documents": len({p["doc_id"] for p in kept}), "sections": len({(p["doc_id"], p["section"]) for p in kept})}
