"""Query latency p50/p95 of vector, fts and hybrid search at 10k and 100k chunks, on this machine.

Chunks are real sample-corpus chunks repeated with a distinguishing token, and their real vectors with small
noise (latency does not depend on meaning); an ANN index (IVF-HNSW-SQ) is built at >= 20k rows as ingest does.
Prints absolute times (noisy on shared machines) and each mode's ratio to the vector baseline of the same run.

    .venv/bin/python bench/query_latency.py [--sizes 10000,100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import appliance  # noqa: F401  (offline settings)
from appliance.config import load_config
from appliance.evaluation.golden import load_questions
from appliance.ingest import ingest
from appliance.models import REPO_ROOT
from appliance.retrieval import Retriever
from appliance.retrieval.index import ChunkIndex
from appliance.workspace import init_workspace


def build(index: ChunkIndex, seed_rows: list[dict], n: int) -> float:
    rng = np.random.default_rng(0)
    rows, t0 = [], time.perf_counter()
    for i in range(n):
        base = seed_rows[i % len(seed_rows)]
        vec = np.asarray(base["vector"], dtype=np.float32) + rng.normal(0, 0.02, len(base["vector"])).astype(np.float32)
        vec /= np.linalg.norm(vec)
        tag = f"copy{i // len(seed_rows)}"
        rows.append(base | {"chunk_id": f"{i:032x}", "content_sha256": f"{i:064x}", "vector": vec.tolist(),
                            "text": base["text"] + " " + tag, "search_text": base["search_text"] + " " + tag})
        if len(rows) == 5000:
            index.chunks.add(rows)
            rows = []
    if rows:
        index.chunks.add(rows)
    index.rebuild_indices()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        seed_ws = init_workspace(tmp / "seed")
        ingest(seed_ws, [REPO_ROOT / "samples" / "corpus"])
        seed = Retriever(seed_ws.config, seed_ws.index_dir)
        seed_rows = seed.index.chunks.to_arrow().to_pylist()
        questions = [q.question for q in load_questions(REPO_ROOT / "samples" / "questions.jsonl")]
        queries = [random.Random(i).choice(questions) for i in range(args.queries)]
        print(f"{'chunks':>8} {'build s':>8} {'mode':>7} {'p50 ms':>8} {'p95 ms':>8} {'p95 / vector p95':>17}")
        for n in [int(s) for s in args.sizes.split(",")]:
            ws = init_workspace(tmp / f"n{n}")
            retriever = Retriever(ws.config, ws.index_dir)
            built = build(retriever.index, seed_rows, n)
            retriever.embedder.embed(["warm up"])
            results = {}
            for mode in ("vector", "fts", "hybrid"):
                lat = [retriever.search(q, k=5, mode=mode).latency_ms for q in queries]
                results[mode] = (statistics.median(lat), float(np.percentile(lat, 95)))
            for mode, (p50, p95) in results.items():
                print(f"{n:>8} {built:>8.1f} {mode:>7} {p50:>8.1f} {p95:>8.1f} {p95 / results['vector'][1]:>17.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
