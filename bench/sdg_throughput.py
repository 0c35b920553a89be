"""Synthetic-data throughput and survival, beside a baseline measured in the same run.

    .venv/bin/python bench/sdg_throughput.py [--corpus DIR] [--chunks N] [--model NAME]

On the first N chunks (spread over the documents) of a fresh index of the corpus (default: the sample corpus), the
default model writes a question for every anchor twice: the product's way (the reply prefilled with
`{"question": "` and stopped at the closing quote) and the baseline (the same prompt with a llama.cpp JSON-schema
grammar, as the judge uses). Prints seconds per question for both and their ratio, then runs the product's
questions through every filter and prints candidates/min, kept/min and the survival after each filter.
Absolute times on these shared machines are noisy; the ratio is the figure to compare.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import appliance  # noqa: F401,E402  (offline settings)
from appliance.answering import Answerer  # noqa: E402
from appliance.ingest import ingest  # noqa: E402
from appliance.llm import SamplingParams, load_generator  # noqa: E402
from appliance.models import REPO_ROOT  # noqa: E402
from appliance.sdg import generate as G  # noqa: E402
from appliance.sdg.anchors import anchors_of, spread  # noqa: E402
from appliance.sdg.filters import FILTERS  # noqa: E402
from appliance.workspace import init_workspace  # noqa: E402

SCHEMA = {"type": "object", "properties": {"question": {"type": "string", "maxLength": 200}}, "required": ["question"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO_ROOT / "samples" / "corpus")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = init_workspace(Path(tmp) / "ws")
        ingest(ws, [args.corpus])
        gen = load_generator(ws, args.model)
        answerer = Answerer.open(ws, gen, need_index=True)
        chunks = G.with_titles([c for c, _ in answerer.retriever.visible([])])
        order = spread(chunks)[: args.chunks]
        writer, filters = G.Writer(gen, ws.config), G.Filters(ws.config, answerer, [])
        work = []
        for c in order:
            tables = G._tables(c["path"], ws.config) if "Table" in (c["element_types"] or []) else []
            work += [(c, a) for a in anchors_of(c, ws.config.sdg.kinds, ws.config.sdg.per_chunk, 0, tables)]
        t0 = time.perf_counter()
        written = [(c, writer.write(a, c, "train")) for c, a in work]
        product = time.perf_counter() - t0
        t0 = time.perf_counter()
        grammar_ok = 0
        for c, a in work:
            hint = f"\n(The answer says {a.hint}.)" if a.hint else ""
            prompt, _ = gen.render(G.QUESTION_WRITER, where=G._where(c), passage=a.excerpt, answer=a.answer, hint=hint)
            out = gen.generate(prompt, SamplingParams(0.0, 1.0, 80, 0), json_schema=SCHEMA).text
            try:
                grammar_ok += str(json.loads(out)["question"]).endswith("?")
            except (ValueError, KeyError):
                pass
        grammar = time.perf_counter() - t0
        n = len(work)
        ok = sum(not isinstance(w, str) for _, w in written)
        print(f"{n} anchors from {len(order)} chunks, model {gen.identity.model}")
        print(f"{'writer':<28} {'s/question':>10} {'questions':>10} {'x baseline':>11}")
        print(f"{'grammar (baseline)':<28} {grammar / n:>10.2f} {grammar_ok:>10} {1.0:>11.2f}")
        print(f"{'prefilled (product)':<28} {product / n:>10.2f} {ok:>10} {grammar / max(product, 1e-9):>11.2f}")
        t0 = time.perf_counter()
        survival = Counter()
        for c, w in written:
            if isinstance(w, str):
                continue
            vector = filters.embedder.embed([w.question])[0]
            _, outcomes = filters.run(w, c, vector)
            for o in outcomes:
                survival[o.filter] += o.passed
        minutes = (product + time.perf_counter() - t0) / 60
        kept = survival[FILTERS[-1]]
        print(f"candidates/min {ok / minutes:.1f}, kept/min {kept / minutes:.1f} (writing and filtering)")
        print("survival: " + " -> ".join(f"{f} {survival[f]}" for f in FILTERS) + f"  (of {ok} candidates)")


if __name__ == "__main__":
    main()
