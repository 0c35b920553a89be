"""`appliance eval retrieval`: does retrieval put the gold evidence in the top k?

A question's evidence counts as retrieved when one top-k chunk contains the quote (whitespace-normalised); a
multi_hop question needs every quote (its rank is the rank at which the last one is covered). Unanswerable
questions are left out of recall. For each miss we also say whether the quote is in the index at all (a chunking
or parsing problem) or only ranked too low (a ranking problem).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.evaluation.golden import Question, load_questions
from appliance.retrieval import Retriever, SearchResult
from appliance.text import normalise
from appliance.workspace import Workspace


@dataclass(frozen=True)
class QuestionResult:
    """Retrieval outcome for one question."""

    id: str
    kind: str
    retrieved: bool
    rank: int | None          # rank at which all evidence is covered
    in_index: bool            # every quote exists in some chunk the caller may see
    quotes_found: int
    quotes: int
    top_files: list[str]
    latency_ms: float


def evidence_rank(q: Question, result: SearchResult) -> tuple[int | None, int]:
    """Rank at which every evidence quote is covered by the hits so far, and how many quotes the top k cover."""
    quotes = [normalise(e) for e in q.evidence]
    covered: set[int] = set()
    rank = None
    for hit in result.hits:
        text = normalise(hit.text)
        covered |= {i for i, quote in enumerate(quotes) if quote in text}
        if rank is None and len(covered) == len(quotes):
            rank = hit.rank
    return rank, len(covered)


def _in_index(q: Question, visible: list[tuple[dict, str]]) -> bool:
    return all(any(normalise(e) in text for _, text in visible) for e in q.evidence)


def summarise(results: list[QuestionResult], k: int) -> dict:
    """recall@k, MRR (0 for a miss) overall and by kind."""
    def block(rs: list[QuestionResult]) -> dict:
        n = len(rs)
        return {"n": n, "recall_at_k": round(sum(r.retrieved for r in rs) / n, 4) if n else None,
                "mrr": round(sum(1 / r.rank for r in rs if r.rank) / n, 4) if n else None}

    kinds = sorted({r.kind for r in results})
    return block(results) | {"k": k, "by_kind": {kind: block([r for r in results if r.kind == kind]) for kind in kinds},
                             "not_in_index": [r.id for r in results if not r.in_index],
                             "ranked_too_low": [r.id for r in results if r.in_index and not r.retrieved]}


def evaluate_retrieval(ws: Workspace, questions_path: Path, k: int | None = None, mode: str | None = None,
                       groups: list[str] | None = None, rerank: str | None = None, command: str = "") -> dict:
    """Run every answerable question through retrieval, record each retrieval, and return the summary."""
    questions = [q for q in load_questions(questions_path) if q.answerable]
    retriever = Retriever(ws.config, ws.index_dir)
    retriever.require_chunks()
    k = k or ws.config.retrieval.k
    results = []
    with ws.run("eval-retrieval", command) as run:
        for q in questions:
            caller = sorted(set(groups or []) | set(q.groups))
            res = retriever.search(q.question, k=k, mode=mode, groups=caller, rerank=rerank)
            rank, found = evidence_rank(q, res)
            r = QuestionResult(id=q.id, kind=q.kind, retrieved=rank is not None, rank=rank,
                               in_index=_in_index(q, retriever.visible(caller)), quotes_found=found, quotes=len(q.evidence),
                               top_files=[h.file_name for h in res.hits], latency_ms=res.latency_ms)
            results.append(r)
            run.append("retrievals", question_id=q.id, query=q.question, mode=res.mode, k=k, groups_json=caller,
                       rerank=res.rerank, hits_json=[{"rank": h.rank, "chunk_id": h.chunk_id, "score": h.score,
                                                       "file": h.file_name, "page": h.page_start,
                                                       "vector_rank": h.vector_rank, "fts_rank": h.fts_rank}
                                                      for h in res.hits],
                       evidence_found=r.retrieved, evidence_rank=rank, latency_ms=res.latency_ms)
        summary = summarise(results, k) | {"mode": mode or ws.config.retrieval.mode,
                                           "rerank": rerank or ws.config.retrieval.rerank,
                                           "chunks": retriever.index.count(), "questions_file": str(questions_path)}
        run.event("retrieval_summary", **summary)
        summary["run_id"] = run.run_id
    summary["questions"] = [asdict(r) for r in results]
    return summary
