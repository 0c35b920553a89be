"""Answer speed by llama.cpp CPU backend: the portable AVX2 build (haswell, what the bundle shipped before it had
variants) against the one chosen for this CPU, in one run, with the default model.

    .venv/bin/python bench/llama_cpu.py [--questions 6] [--workspace DIR (an ingested one, reused)]

Per backend, in its own process (a loaded backend stays loaded): prompt processing and generation tokens/s from
llama.cpp's own counters on a RAG-sized prompt (~650 tokens), and seconds per RAG answer for the first N questions
of ../shared/devset (samples/ when absent) through `eval answers` (so each run is also in the audit store).
Ratios are chosen / portable.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import appliance  # noqa: F401  (offline settings)
from appliance.models import REPO_ROOT

DEVSET = REPO_ROOT.parent / "shared" / "devset"
SAMPLES = REPO_ROOT / "samples"
PROMPT_TOKENS = 650


def measure(ws_dir: Path, questions: Path, n: int) -> dict:
    """In this process, with the backend APPLIANCE_LLAMA_CPU names (or the chosen one)."""
    import llama_cpp

    from appliance.evaluation.answers import evaluate_answers
    from appliance.llm import load_generator
    from appliance.llm.cpu import ensure_loaded
    from appliance.workspace import open_workspace

    ws = open_workspace(ws_dir)
    gen = load_generator(ws)
    choice = ensure_loaded(Path())
    words = (REPO_ROOT / "README.md").read_text().split()
    tokens = gen.tokens(" ".join(words))[:PROMPT_TOKENS]
    rates = {"prompt": [], "generation": []}
    for _ in range(3):
        gen.llm.reset()
        llama_cpp.llama_perf_context_reset(gen.llm._ctx.ctx)
        gen.llm.create_completion(tokens, max_tokens=64, temperature=0.0)
        perf = llama_cpp.llama_perf_context(gen.llm._ctx.ctx)
        rates["prompt"].append(perf.n_p_eval / perf.t_p_eval_ms * 1000)
        rates["generation"].append(perf.n_eval / perf.t_eval_ms * 1000 if perf.n_eval else 0.0)
    summary = evaluate_answers(ws, questions, ["rag"], "single", limit=n)["conditions"]["rag"]
    return {"backend": choice.name, "prompt_tok_s": max(rates["prompt"]), "gen_tok_s": max(rates["generation"]),
            "rag_s_per_question": summary["seconds_per_question"], "accuracy": summary["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=6, help="RAG answers per backend (the first N questions)")
    ap.add_argument("--workspace", type=Path, help="an ingested workspace to reuse (default: a fresh one)")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    base = DEVSET if DEVSET.is_dir() else SAMPLES
    questions = base / "questions.jsonl"
    if args.measure:
        print(json.dumps(measure(args.workspace, questions, args.questions)))
        return
    from appliance.ingest import ingest
    from appliance.llm.cpu import PORTABLE, variants
    from appliance.workspace import init_workspace

    if not variants():
        sys.exit("this llama.cpp build has one built-in CPU backend: nothing to compare")
    ws = init_workspace(args.workspace or Path(tempfile.mkdtemp(prefix="bench-llama-cpu-")) / "ws", [])
    ingest(ws, [base / "corpus"])
    rows = []
    for forced in (PORTABLE, ""):
        env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_LLAMA_CPU"}
        if forced:
            env["APPLIANCE_LLAMA_CPU"] = forced
        out = subprocess.run([sys.executable, __file__, "--measure", "--workspace", str(ws.root),
                              "--questions", str(args.questions)], env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"backend {forced or 'chosen'} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{base.name}: default model, {PROMPT_TOKENS}-token prompt, RAG on the first {args.questions} questions, "
          f"{os.cpu_count()} threads")
    print(f"{'backend':>16} {'prompt tok/s':>13} {'gen tok/s':>10} {'RAG s/q':>8} {'accuracy':>9}")
    for r in rows:
        print(f"{r['backend']:>16} {r['prompt_tok_s']:>13.1f} {r['gen_tok_s']:>10.1f} {r['rag_s_per_question']:>8} "
              f"{r['accuracy']:>9.1%}")
    p, c = rows
    print(f"{'chosen/portable':>16} {c['prompt_tok_s'] / p['prompt_tok_s']:>13.2f}x "
          f"{c['gen_tok_s'] / p['gen_tok_s']:>9.2f}x {p['rag_s_per_question'] / c['rag_s_per_question']:>7.2f}x")


if __name__ == "__main__":
    main()
