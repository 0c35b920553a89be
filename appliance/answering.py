"""Question -> context -> prompt -> answer -> answer row: the one path that `ask`, `eval answers` and the server
use (`eval rejudge` reads the rows it wrote).

What the model is given depends on the condition:
- `closed-book`: nothing; the model's own knowledge.
- `oracle`: the ingested chunk(s) holding the gold evidence, visible to the caller's groups (evaluation only: it
  needs the evidence quotes). A bare quote is often not self-contained (a table row without its header), so the
  whole chunk is given, as retrieval would.
- `rag`: the retrieved top `eval.context_k` chunks.

Passages are numbered, headed by file and section, and cut to a token budget (whole chunks, the best kept). Rag
passages are shown best last by default: measured on ../shared/devset, the 0.5B model used the passage next to the
question far more reliably than one three passages away.

An `Answerer` holds the generator, the index and the configuration open across many questions (a server must not
reload the model per request).
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.choices import CONDITIONS
from appliance.config import Config
from appliance.errors import UsageError
from appliance.evaluation.strategies import StrategyResult, StrategyRunner
from appliance.llm import Generator
from appliance.llm.prompts import CLOSED_BOOK, CONTEXT
from appliance.text import normalise

if TYPE_CHECKING:
    from appliance.audit import Run
    from appliance.retrieval import Retriever, SearchResult
    from appliance.workspace import Workspace

PASSAGE_HEADER_TOKENS = 16  # a passage's "[n] (file, p. N - section)" line


@dataclass(frozen=True)
class Passage:
    """One chunk given to the model, with where it comes from."""

    chunk_id: str
    text: str
    file_name: str
    section: str
    page: int | None
    rank: int | None = None          # rag: retrieval rank
    score: float | None = None

    def record(self) -> dict[str, Any]:
        return {"chunk_id": self.chunk_id, "rank": self.rank, "score": self.score, "file": self.file_name,
                "page": self.page}


@dataclass(frozen=True)
class Context:
    """The passages of one condition for one question, and whether they hold the gold evidence."""

    condition: str
    passages: list[Passage] = field(default_factory=list)
    evidence_in_context: bool | None = None   # None: not applicable (closed-book, no evidence given)
    dropped: int = 0                          # passages cut by the token budget
    missing_quotes: list[str] = field(default_factory=list)  # oracle: quotes found in no single chunk

    def render(self) -> str:
        """The passages as the prompt shows them ("(no passages)" when there are none)."""
        if not self.passages:
            return "(no passages)"
        blocks = []
        for i, p in enumerate(self.passages, 1):
            where = p.file_name + (f", p. {p.page}" if p.page else "") + (f" — {p.section}" if p.section else "")
            blocks.append(f"[{i}] ({where})\n{shown(p.text)}")
        return "\n\n".join(blocks)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.passages)


def shown(text: str) -> str:
    """A passage's text as the prompt shows it: a table keeps its header row (cells are tab-separated; the chunker
    repeats a table's header at the top of each of its chunks) and each row under it becomes `column: value`
    fields, so that a small model reads a cell together with its column's name instead of counting tabs.
    Measured (default model, one run each, none lost): rag devset + extra 33 -> 34 of 74 right, samples 13 -> 15
    of 30; oracle devset + extra 54 -> 57 (table questions 3 -> 6 of 9); prompts 2-10 % longer."""
    lines, out, block = text.split("\n"), [], []
    for line in [*lines, ""]:
        if "\t" in line and (not block or line.count("\t") == block[0].count("\t")):
            block.append(line)
            continue
        out.extend(_fields(block))
        block = [line] if "\t" in line else []
        if not block:
            out.append(line)
    return "\n".join(out[:-1])


def _fields(block: list[str]) -> list[str]:
    """Rows of one table (tab-separated, the first its header) with each row under the header as
    `column: value; ...` (empty cells left out)."""
    if len(block) < 2:
        return block
    names = block[0].split("\t")
    return [block[0], *("; ".join(f"{name}: {cell}" if name.strip() else cell
                                  for name, cell in zip(names, row.split("\t")) if cell.strip())
                        for row in block[1:])]


def covers_evidence(evidence: tuple[str, ...], text: str) -> bool | None:
    """Whether `text` holds every evidence quote (None when there is no evidence: unanswerable, or no gold)."""
    if not evidence:
        return None
    norm = normalise(text)
    return all(normalise(e) in norm for e in evidence)


def budget(passages: list[Passage], max_tokens: int, count: Callable[[str], int]) -> tuple[list[Passage], int]:
    """Keep passages in order while they fit `max_tokens` (the first always stays); return kept and dropped count."""
    kept, used = [], 0
    for p in passages:
        n = count(shown(p.text)) + PASSAGE_HEADER_TOKENS
        if kept and used + n > max_tokens:
            continue
        kept.append(p)
        used += n
    return kept, len(passages) - len(kept)


def oracle_passages(evidence: tuple[str, ...], visible: list[tuple[dict[str, Any], str]]
                    ) -> tuple[list[Passage], list[str]]:
    """The chunks holding each evidence quote (the first chunk per quote, in document order), from `visible`
    (chunk, normalised text) pairs, and the quotes held by no single chunk (those are given as the bare quote)."""
    found: dict[str, Passage] = {}
    missing = []
    for quote in evidence:
        nq = normalise(quote)
        hit = next((c for c, text in visible if nq in text), None)
        if hit is None:
            missing.append(quote)
            found[f"quote:{quote}"] = Passage(chunk_id="", text=quote, file_name="(gold evidence quote)",
                                              section="", page=None)
        elif hit["chunk_id"] not in found:
            found[hit["chunk_id"]] = Passage(chunk_id=hit["chunk_id"], text=hit["text"], file_name=hit["file_name"],
                                             section=hit["section"], page=hit["page_start"])
    return list(found.values()), missing


def retrieved_context(result: Any, max_tokens: int, count: Callable[[str], int], evidence: tuple[str, ...] = (),
                      order: str = "best-first") -> Context:
    """The rag context of a retrieval result: hits cut to `max_tokens` (the lowest-ranked dropped first), shown
    best first or best last (next to the question), and whether it holds the `evidence` quotes."""
    passages = [Passage(h.chunk_id, h.text, h.file_name, h.section, h.page_start, h.rank, h.score)
                for h in result.hits]
    kept, dropped = budget(passages, max_tokens, count)
    if order == "best-last":
        kept.reverse()
    return Context("rag", kept, covers_evidence(evidence, "\n".join(p.text for p in kept)), dropped)


@dataclass(frozen=True)
class Answer:
    """One answered question: what the model was given, what it said, and the answer row that records it."""

    question: str
    condition: str
    strategy: str
    context: Context
    retrieval: SearchResult | None
    result: StrategyResult
    row_hash: str | None                      # the final answers row (None when not recorded)
    wall_ms: float                            # context + generation (+ recording)

    @property
    def text(self) -> str:
        return self.result.answer


class Answerer:
    """Answers questions with one generator, one index and one configuration, held open across questions."""

    def __init__(self, cfg: Config, generator: Generator, retriever: Retriever | None = None) -> None:
        self.cfg = cfg
        self.generator = generator
        self.retriever = retriever
        self.strategies = StrategyRunner(generator, cfg)

    @classmethod
    def open(cls, ws: Workspace, generator: Generator, need_index: bool,
             empty_hint: str = " (oracle and rag need it)") -> Answerer:
        """An answerer over the workspace's index (refusing an empty one when `need_index`)."""
        retriever = None
        if need_index:
            from appliance.retrieval import Retriever

            retriever = Retriever(ws.config, ws.index_dir)
            retriever.require_chunks(empty_hint)
        return cls(ws.config, generator, retriever)

    def _index(self) -> Retriever:
        if self.retriever is None:
            raise UsageError("this condition needs the document index; none is open")
        return self.retriever

    def context(self, question: str, condition: str, groups: list[str], evidence: tuple[str, ...] = (),
                fixed: list[Passage] | None = None) -> tuple[Context, SearchResult | None]:
        """The passages of `condition` for `question` as the model will see them, and the retrieval result (rag);
        `evidence` (gold quotes) makes the oracle possible and tells whether the passages hold them; `fixed`
        passages (a probe question's own) replace retrieval under rag."""
        e = self.cfg.eval
        count = self.generator.count_tokens
        if condition == "closed-book":
            return Context(condition), None
        if condition == "oracle":
            passages, missing = oracle_passages(evidence, self._index().visible(groups))
            kept, dropped = budget(passages, e.context_max_tokens, count)
            return Context(condition, kept, covers_evidence(evidence, "\n".join(p.text for p in kept)), dropped,
                           missing), None
        if condition == "rag" and fixed is not None:
            kept, dropped = budget(fixed, e.context_max_tokens, count)
            return Context(condition, kept, covers_evidence(evidence, "\n".join(p.text for p in kept)), dropped), None
        if condition == "rag":
            result = self._index().search(question, k=e.context_k, groups=groups)
            return retrieved_context(result, e.context_max_tokens, count, evidence, e.context_order), result
        raise UsageError(f"unknown condition {condition!r} (choose {', '.join(CONDITIONS)})")

    def generate(self, question: str, context: Context, strategy: str) -> StrategyResult:
        """The answer to `question` from `context` (nothing, for closed-book) by `strategy`."""
        if context.condition == "closed-book":
            return self.strategies.run(strategy, CLOSED_BOOK, question)
        return self.strategies.run(strategy, CONTEXT, question, context.render())

    def answer(self, question: str, condition: str = "rag", strategy: str = "single", groups: list[str] | None = None,
               evidence: tuple[str, ...] = (), run: Run | None = None, question_id: str | None = None,
               fixed: list[Passage] | None = None) -> Answer:
        """Context, generation and (with `run`) the retrieval and answer rows of one question."""
        if not question.strip():
            raise UsageError("the question is empty")
        t0 = time.perf_counter()
        ctx, retrieval = self.context(question, condition, sorted(groups or []), evidence, fixed)
        result = self.generate(question, ctx, strategy)
        row_hash = None
        if run is not None:
            if retrieval is not None:
                record_retrieval(run, question_id, retrieval, ctx)
            row_hash = record_answer(run, question_id, question, ctx, strategy, self.generator, result)
        return Answer(question, condition, strategy, ctx, retrieval, result, row_hash,
                      round((time.perf_counter() - t0) * 1000, 1))


def record_retrieval(run: Run, question_id: str | None, retrieval: SearchResult, ctx: Context) -> str:
    """The retrievals row of a rag answer: the hits as the model was given them."""
    return run.append("retrievals", question_id=question_id, query=retrieval.query, mode=retrieval.mode,
                      k=retrieval.k, groups_json=retrieval.groups, rerank=retrieval.rerank,
                      hits_json=[p.record() for p in ctx.passages], evidence_found=ctx.evidence_in_context,
                      evidence_rank=None, latency_ms=retrieval.latency_ms)


def record_answer(run: Run, question_id: str | None, question: str, ctx: Context, strategy: str, gen: Generator,
                  result: StrategyResult) -> str:
    """Every generation of the strategy as an answers row ("strategy/role"), then the final answer row (strategy
    name alone) carrying the totals and how it was chosen, each naming the model and adapter that answered.
    Returns the final row's hash."""
    common = dict(question_id=question_id, question=question, condition=ctx.condition, **gen.identity.record(),
                  retrieved_json=[p.record() for p in ctx.passages])
    step_hashes = []
    if strategy != "single":
        for s in result.steps:
            step_hashes.append(run.append(
                "answers", **common, strategy=f"{strategy}/{s.role}", template_id=s.template_id, prompt=s.gen.prompt,
                prompt_sha256=hashlib.sha256(s.gen.prompt.encode()).hexdigest(),
                params_json=asdict(s.params) | {"backend": gen.backend}, seed=s.params.seed, output=s.gen.text,
                finish_reason=s.gen.finish_reason, prompt_tokens=s.gen.prompt_tokens,
                completion_tokens=s.gen.completion_tokens, latency_ms=s.gen.latency_ms))
    final_step = next((s for s in result.steps if s.gen.text == result.answer), result.steps[-1])
    return run.append(
        "answers", **common, strategy=strategy, template_id=final_step.template_id, prompt=final_step.gen.prompt,
        prompt_sha256=hashlib.sha256(final_step.gen.prompt.encode()).hexdigest(),
        params_json=asdict(final_step.params) | {"backend": gen.backend, "n_ctx": gen.n_ctx,
                                                  "steps": step_hashes, "strategy_details": result.details,
                                                  "dropped_passages": ctx.dropped,
                                                  "oracle_missing_quotes": ctx.missing_quotes},
        seed=final_step.params.seed, output=result.answer, finish_reason=final_step.gen.finish_reason,
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, latency_ms=result.latency_ms)
