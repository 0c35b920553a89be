"""Questions per minute for every condition and strategy with the default model, on ../shared/devset (or samples/
when the devset is absent), with accuracy beside it; ratios against closed-book `single` in the same run.

    .venv/bin/python bench/answer_speed.py [--limit 8] [--samples 3] [--workspace DIR (an ingested one, reused)]

Each (strategy, condition) cell is its own `eval answers` run, so every figure is also in the audit store.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import appliance  # noqa: F401
from appliance.evaluation.answers import evaluate_answers
from appliance.ingest import ingest
from appliance.models import REPO_ROOT
from appliance.workspace import init_workspace

DEVSET = REPO_ROOT.parent / "shared" / "devset"
SAMPLES = REPO_ROOT / "samples"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=8, help="questions per cell (the first N of the golden set)")
    ap.add_argument("--samples", type=int, default=3, help="eval.samples for best-of-n and self-consistency")
    ap.add_argument("--workspace", type=Path, help="an ingested workspace to reuse (default: a fresh one)")
    args = ap.parse_args()
    base = DEVSET if DEVSET.is_dir() else SAMPLES
    ws = init_workspace(args.workspace or Path(tempfile.mkdtemp(prefix="bench-answers-")) / "ws",
                        [f"eval.samples={args.samples}"])
    ingest(ws, [base / "corpus"])
    questions = base / "questions.jsonl"
    print(f"{base.name}: first {args.limit} questions, model {ws.config.models.generator}, samples {args.samples}")
    print(f"{'strategy':>17} {'condition':>12} {'q/min':>7} {'x closed-book single':>21} {'accuracy':>9} "
          f"{'prompt tok':>10}")
    baseline = None
    for strategy in ("single", "best-of-n", "self-consistency", "council"):
        conditions = ["closed-book", "oracle", "rag"] if strategy == "single" else ["rag"]
        for cond in conditions:
            s = evaluate_answers(ws, questions, [cond], strategy, limit=args.limit)
            c = s["conditions"][cond]
            qpm = 60 / c["seconds_per_question"] if c["seconds_per_question"] else float("inf")
            baseline = baseline or qpm
            print(f"{strategy:>17} {cond:>12} {qpm:>7.2f} {qpm / baseline:>21.2f} {c['accuracy']:>9.1%} "
                  f"{c['prompt_tokens_mean']:>10}", flush=True)


if __name__ == "__main__":
    main()
