"""recall@5 and MRR for every chunker x retrieval mode, on ../shared/devset (skips cleanly when absent) and on
samples/, in one run and one table: hybrid is compared with plain BM25 and plain vector search on the same chunks.

    .venv/bin/python bench/retrieval_quality.py [--k 5]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import appliance  # noqa: F401
from appliance.evaluation.golden import load_questions
from appliance.evaluation.retrieval import evidence_rank
from appliance.ingest import ingest
from appliance.models import REPO_ROOT
from appliance.retrieval import Retriever
from appliance.workspace import init_workspace

SETS = {"devset": (REPO_ROOT.parent / "shared" / "devset" / "corpus", REPO_ROOT.parent / "shared" / "devset" / "questions.jsonl"),
        "samples": (REPO_ROOT / "samples" / "corpus", REPO_ROOT / "samples" / "questions.jsonl")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    print(f"{'set':>8} {'chunker':>9} {'chunks':>7} {'over win':>8} {'mode':>7} {f'recall@{args.k}':>9} {'MRR':>6} "
          f"{'multi_hop':>9}  misses")
    try:
        for name, (corpus, qfile) in SETS.items():
            if not corpus.is_dir():
                print(f"{name:>8}: {corpus} not found, skipped")
                continue
            questions = [q for q in load_questions(qfile) if q.answerable]
            for chunker in ("structure", "window"):
                ws = init_workspace(tmp / f"{name}-{chunker}", [f"ingest.chunker={chunker}"])
                report = ingest(ws, [corpus])
                retriever = Retriever(ws.config, ws.index_dir)
                for mode in ("vector", "fts", "hybrid"):
                    ranks = {q.id: evidence_rank(q, retriever.search(q.question, k=args.k, mode=mode,
                                                                     groups=q.groups))[0] for q in questions}
                    recall = sum(r is not None for r in ranks.values()) / len(ranks)
                    mrr = sum(1 / r for r in ranks.values() if r) / len(ranks)
                    mh = [q.id for q in questions if q.kind == "multi_hop"]
                    mh_hit = sum(ranks[i] is not None for i in mh)
                    misses = " ".join(i for i, r in ranks.items() if r is None)
                    print(f"{name:>8} {chunker:>9} {report.chunks_total:>7} {report.over_window:>8} {mode:>7} "
                          f"{recall:>9.3f} {mrr:>6.3f} {f'{mh_hit}/{len(mh)}':>9}  {misses}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
