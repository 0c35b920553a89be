"""The bundled generator as a reranker (issue 14, item 3: no cross-encoder has weights in a registry package), against
no rerank, in one run: hybrid top-N candidates reordered by the generator's probability that the passage answers
the question (its next-token logits for "Yes" against "No" after the prompt), recall@5 and MRR of both orders, and the seconds the
rerank adds per query beside the seconds of a RAG answer's prompt.

    .venv/bin/python bench/generator_rerank.py [--candidates 10] [--workspace DIR (an ingested one, reused)]

Runs on ../shared/devset (main and extra answerable questions) or samples/.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import appliance  # noqa: F401  (offline settings)
from appliance.evaluation.golden import load_questions
from appliance.evaluation.retrieval import evidence_rank
from appliance.models import REPO_ROOT

DEVSET = REPO_ROOT.parent / "shared" / "devset"
SAMPLES = REPO_ROOT / "samples"
SYSTEM = "You judge whether a passage answers a question. Reply with Yes or No only."
USER = "Question: {question}\n\nPassage:\n{passage}\n\nDoes the passage answer the question?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=10, help="hybrid candidates the generator reorders")
    ap.add_argument("--workspace", type=Path, help="an ingested workspace to reuse (default: a fresh one)")
    args = ap.parse_args()
    from appliance.ingest import ingest
    from appliance.llm import load_generator
    from appliance.retrieval import Retriever
    from appliance.workspace import init_workspace

    base = DEVSET if DEVSET.is_dir() else SAMPLES
    files = [base / "questions.jsonl"] + ([base / "extra" / "questions.jsonl"] if (base / "extra").is_dir() else [])
    questions = [q for f in files for q in load_questions(f) if q.answerable]
    ws = init_workspace(args.workspace or Path(tempfile.mkdtemp(prefix="bench-rerank-")) / "ws", [])
    ingest(ws, [base / "corpus"])
    retriever = Retriever(ws.config, ws.index_dir)
    gen = load_generator(ws)
    yes_id, no_id = (gen.llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in ("Yes", "No"))
    rows, spent = [], 0.0
    for q in questions:
        result = retriever.search(q.question, k=args.candidates, mode="hybrid", groups=q.groups)
        t0 = time.perf_counter()
        scored = []
        for hit in result.hits:
            prompt, _ = gen.render_messages([{"role": "system", "content": SYSTEM},
                                             {"role": "user", "content": USER.format(question=q.question,
                                                                                     passage=hit.text)}])
            gen.llm.reset()
            gen.llm.eval(gen.tokens(prompt))
            logits = gen.next_logits()                             # the next token's, after the whole prompt
            yes, no = float(logits[yes_id]), float(logits[no_id])
            scored.append((1 / (1 + math.exp(no - yes)), hit))
        spent += time.perf_counter() - t0
        order = [h for _, h in sorted(scored, key=lambda s: (-s[0], s[1].rank))]
        reranked = dataclasses.replace(result, hits=[dataclasses.replace(h, rank=i + 1) for i, h in enumerate(order)])
        rows.append((q, evidence_rank(q, result)[0], evidence_rank(q, reranked)[0]))

    def figures(i: int) -> tuple[float, float, str]:
        ranks = [r[i] for r in rows]
        recall = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
        mrr = sum(1 / r for r in ranks if r is not None and r <= 5) / len(ranks)
        return recall, mrr, " ".join(r[0].id for r in rows if r[i] is None or r[i] > 5)
    print(f"{base.name}: {len(rows)} answerable questions, hybrid top {args.candidates} reordered by "
          f"{ws.config.models.generator}")
    print(f"{'order':>10} {'recall@5':>9} {'MRR':>6}  misses")
    for name, i in (("hybrid", 1), ("generator", 2)):
        recall, mrr, misses = figures(i)
        print(f"{name:>10} {recall:>9.3f} {mrr:>6.3f}  {misses}")
    print(f"rerank: {spent / len(rows):.2f} s per query ({args.candidates} passages through the generator)")


if __name__ == "__main__":
    main()
