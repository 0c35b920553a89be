"""recall@5, recall@3 and MRR for every chunker x retrieval mode, on ../shared/devset (skips cleanly when absent) and on
samples/, in one run and one table: hybrid is compared with plain BM25 and plain vector search on the same chunks,
and with the naive method a user would otherwise run: BM25 over fixed windows of ~1,000 characters (250 word pieces,
no overlap, no structure), the row marked `naive`. `ctx tok` is what a rag answer then costs: the generator tokens of
the eval.context_k passages it is given (cut to eval.context_max_tokens), averaged over the questions; `parent` is
the structure chunker with chunks up to 400 word pieces embedded in windows (ingest.embed_window); `hop` is the
default chunks searched with retrieval.second_hop.

    .venv/bin/python bench/retrieval_quality.py [--k 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import appliance  # noqa: F401
from appliance.answering import retrieved_context
from appliance.evaluation.golden import load_questions
from appliance.evaluation.retrieval import QuestionResult, evidence_rank, summarise
from appliance.ingest import ingest
from appliance.llm import load_generator
from appliance.models import REPO_ROOT
from appliance.retrieval import Retriever
from appliance.workspace import init_workspace

SETS = {"devset": (REPO_ROOT.parent / "shared" / "devset" / "corpus", REPO_ROOT.parent / "shared" / "devset" / "questions.jsonl"),
        "samples": (REPO_ROOT / "samples" / "corpus", REPO_ROOT / "samples" / "questions.jsonl")}


# (label, workspace settings, modes): the product's chunkers, then the naive baseline
RUNS = [("structure", ["ingest.chunker=structure"], ("vector", "fts", "hybrid")),
        ("hop", ["retrieval.second_hop=true"], ("hybrid",)),
        ("window", ["ingest.chunker=window"], ("vector", "fts", "hybrid")),
        ("parent", ["ingest.embed_window=250", "ingest.max_tokens=400"], ("vector", "fts", "hybrid")),
        ("naive", ["ingest.chunker=window", "ingest.window_tokens=250", "ingest.window_overlap=0"], ("fts",))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    print(f"{'set':>8} {'chunker':>9} {'chunks':>7} {'over win':>8} {'mode':>7} {f'recall@{args.k}':>9} "
          f"{'recall@3':>8} {'MRR':>6} {'multi_hop':>9} {'ctx tok':>7}  misses")
    try:
        for name, (corpus, qfile) in SETS.items():
            if not corpus.is_dir():
                print(f"{name:>8}: {corpus} not found, skipped")
                continue
            questions = [q for q in load_questions(qfile) if q.answerable]
            for chunker, settings, modes in RUNS:
                ws = init_workspace(tmp / f"{name}-{chunker}", settings)
                report = ingest(ws, [corpus])
                retriever = Retriever(ws.config, ws.index_dir)
                count, e = load_generator(ws).count_tokens, ws.config.eval
                for mode in modes:
                    results, tokens = [], []
                    for q in questions:
                        found = retriever.search(q.question, k=args.k, mode=mode, groups=q.groups)
                        rank = evidence_rank(q, found)[0]
                        rag = dataclasses.replace(found, hits=found.hits[:e.context_k])    # MMR: the same first k
                        passages = retrieved_context(rag, e.context_max_tokens, count).passages
                        tokens.append(sum(count(p.text) for p in passages))
                        results.append(QuestionResult(id=q.id, kind=q.kind, retrieved=rank is not None, rank=rank,
                                                      in_index=True, quotes_found=0, quotes=len(q.evidence),
                                                      top_files=[], latency_ms=0.0))
                    s = summarise(results, args.k)
                    mh = s["by_kind"].get("multi_hop", {"n": 0, "recall_at_k": 0.0})
                    mh_hits = f"{round(mh['recall_at_k'] * mh['n'])}/{mh['n']}"
                    misses = " ".join(r.id for r in results if not r.retrieved)
                    at3 = sum(r.rank is not None and r.rank <= 3 for r in results) / len(results)
                    print(f"{name:>8} {chunker:>9} {report.chunks_total:>7} {report.over_window:>8} {mode:>7} "
                          f"{s['recall_at_k']:>9.3f} {at3:>8.3f} {s['mrr']:>6.3f} {mh_hits:>9} "
                          f"{sum(tokens) / len(tokens):>7.0f}  {misses}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
