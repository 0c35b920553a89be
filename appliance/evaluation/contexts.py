"""What the model is given for each condition.

- `closed-book`: nothing; the model's own knowledge.
- `oracle`: the ingested chunk(s) that hold the gold evidence, visible to the question's groups. A bare quote is
  often not self-contained (a table row without its header), so the whole chunk is given, as retrieval would.
- `rag`: the retrieved top-k chunks, as stored by retrieval.

Passages are numbered, headed by file and section, and cut to a token budget (whole chunks, best kept first). Rag
passages are shown best last by default: measured on ../shared/devset, the 0.5B model used the passage next to the
question far more reliably than one three passages away.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from appliance.evaluation.golden import Question, normalise

CONDITIONS = ("closed-book", "oracle", "rag")


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
    evidence_in_context: bool | None = None   # None: not applicable (closed-book, unanswerable)
    dropped: int = 0                          # passages cut by the token budget
    missing_quotes: list[str] = field(default_factory=list)  # oracle: quotes found in no single chunk

    def render(self) -> str:
        """The passages as the prompt shows them ("(no passages)" when there are none)."""
        if not self.passages:
            return "(no passages)"
        blocks = []
        for i, p in enumerate(self.passages, 1):
            where = p.file_name + (f", p. {p.page}" if p.page else "") + (f" — {p.section}" if p.section else "")
            blocks.append(f"[{i}] ({where})\n{p.text}")
        return "\n\n".join(blocks)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.passages)


def covers_evidence(q: Question, text: str) -> bool | None:
    """Whether `text` holds every evidence quote of `q` (None for unanswerable questions)."""
    if not q.answerable:
        return None
    norm = normalise(text)
    return all(normalise(e) in norm for e in q.evidence)


def budget(passages: list[Passage], max_tokens: int, count: Callable[[str], int]) -> tuple[list[Passage], int]:
    """Keep passages in order while they fit `max_tokens` (the first always stays); return kept and dropped count."""
    kept, used = [], 0
    for p in passages:
        n = count(p.text) + 16  # header line
        if kept and used + n > max_tokens:
            continue
        kept.append(p)
        used += n
    return kept, len(passages) - len(kept)


def oracle_passages(q: Question, visible: list[tuple[dict[str, Any], str]]) -> tuple[list[Passage], list[str]]:
    """The chunks holding each evidence quote (the first chunk per quote, in document order), from `visible`
    (chunk, normalised text) pairs, and the quotes held by no single chunk (those are given as the bare quote)."""
    found: dict[str, Passage] = {}
    missing = []
    for quote in q.evidence:
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


def retrieved_context(result: Any, max_tokens: int, count: Callable[[str], int], q: Question | None = None,
                      order: str = "best-first") -> Context:
    """The rag context of a retrieval result: hits cut to `max_tokens` (the lowest-ranked dropped first), shown
    best first or best last (next to the question); with `q`, whether it holds the gold evidence."""
    passages = [Passage(h.chunk_id, h.text, h.file_name, h.section, h.page_start, h.rank, h.score)
                for h in result.hits]
    kept, dropped = budget(passages, max_tokens, count)
    if order == "best-last":
        kept.reverse()
    covered = covers_evidence(q, "\n".join(p.text for p in kept)) if q is not None else None
    return Context("rag", kept, covered, dropped)
