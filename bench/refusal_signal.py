"""Does the generator know when its passages do not answer? Under rag, the model's own probability of the refusal
(log P("I don't know" + end of turn | the rag prompt), read teacher-forced from llama.cpp) for each question of one
or more golden sets, beside what greedy decoding answered (the product's behaviour: the baseline row). With
--adapter the same prompts are scored again with the adapter switched on (one loaded model, A/B), at each LoRA
scale of --scales (default 1; a scale below 1 weakens the adapter: a knob against over-refusal), and --no-base
skips the base model's pass.

Prints, per model, the AUROC of that probability for unanswerable against answerable questions, and for a gate
"refuse when P(refusal) >= t" at several t how many unanswerable questions it refuses and how many answerable ones
(split by whether the gold evidence is in the passages), next to greedy decoding's refusals. A gate helps only
where the AUROC is well above 0.5: the number says whether calibrating one is worth it for this model.

    .venv/bin/python bench/refusal_signal.py --workspace WS --questions ../shared/devset/questions.jsonl \
        [--questions ../shared/devset/extra/questions.jsonl] [--adapter NAME [--scales 1,0.5] [--no-base]]

WS is an ingested workspace (the questions' corpus). A probe from `appliance sdg probe` works as a questions file
(its questions carry their passages: each asked with its evidence withheld and present). Writes nothing; skips
cleanly when no --questions file exists.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import appliance  # noqa: F401
from appliance.answering import Answerer, Passage
from appliance.evaluation.golden import load_questions
from appliance.evaluation.judge import is_refusal
from appliance.llm import SamplingParams, load_generator
from appliance.llm.prompts import CONTEXT
from appliance.retrieval import Retriever
from appliance.sdg.examples import REFUSAL
from appliance.workspace import open_workspace

THRESHOLDS = (0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.005)   # P(refusal) at which the gate refuses


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def refusal_logprob(gen, tokens: list[int], refusal: list[int]) -> float:
    """log P(refusal tokens | prompt tokens), one token at a time from the last position's logits."""
    llm = gen.llm
    llm.reset()
    llm.eval(tokens)
    total = 0.0
    for t in refusal:
        logits = gen.next_logits()
        total += float(log_softmax(logits)[t])
        llm.eval([t])
    return total


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counted half."""
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def score(gen, answerer: Answerer, prompts: list[tuple], refusal: list[int]) -> list[dict]:
    params = SamplingParams.from_config(answerer.cfg.llm)
    rows = []
    for q, prompt, stop, in_context, source in prompts:
        lp = refusal_logprob(gen, gen.tokens(prompt), refusal)
        greedy = gen.generate(prompt, params, stop).text
        rows.append({"id": q.id, "file": source, "answerable": q.answerable, "in_context": in_context, "lp": lp,
                     "greedy_refused": is_refusal(greedy)})
        print(f"  {q.id:>5} {'answerable' if q.answerable else 'unanswerable':<12} log P(refusal) {lp:7.2f}  "
              f"greedy: {greedy[:60]!r}", flush=True)
    return rows


def table(label: str, rows: list[dict]) -> None:
    un = [r for r in rows if not r["answerable"]]
    inc = [r for r in rows if r["answerable"] and r["in_context"]]
    out = [r for r in rows if r["answerable"] and not r["in_context"]]
    a = auroc([r["lp"] for r in un], [r["lp"] for r in inc + out])
    print(f"\n{label}: AUROC unanswerable vs answerable {a:.3f} (n {len(un)} / {len(inc) + len(out)})")
    print(f"{'refuses when':>22} {'unanswerable':>13} {'answerable, evidence in':>24} {'evidence not in':>16}")

    def line(name: str, refused) -> None:
        print(f"{name:>22} {sum(map(refused, un)):>6}/{len(un):<6} {sum(map(refused, inc)):>17}/{len(inc):<6} "
              f"{sum(map(refused, out)):>9}/{len(out):<6}")

    line("greedy (baseline)", lambda r: r["greedy_refused"])
    for t in THRESHOLDS:
        line(f"P >= {t:g}", lambda r, t=math.log(t): r["lp"] >= t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--questions", type=Path, action="append", default=[])
    ap.add_argument("--adapter", help="an adapter registered in the workspace (scored A/B against its base)")
    ap.add_argument("--scales", default="1", help="LoRA scales the adapter is scored at, comma-separated")
    ap.add_argument("--no-base", action="store_true", help="with --adapter: skip the base model's pass")
    args = ap.parse_args()
    files = [f for f in args.questions if f.is_file()]
    if not files:
        print("skipped: no --questions file exists")
        return
    ws = open_workspace(args.workspace)
    gen = load_generator(ws, adapter=args.adapter)
    answerer = Answerer(ws.config, gen, Retriever(ws.config, ws.index_dir))
    refusal = gen.llm.tokenize(REFUSAL.encode(), add_bos=False, special=False) + [gen.llm.token_eos()]
    prompts = []
    for f in files:
        for q in load_questions(f):
            fixed = [Passage(**x) for x in q.extra["passages"]] if "passages" in q.extra else None  # a probe's own
            ctx, _ = answerer.context(q.question, "rag", q.groups, tuple(q.evidence), fixed)
            prompt, stop = gen.render_messages(CONTEXT.messages(question=q.question, context=ctx.render()))
            prompts.append((q, prompt, stop, bool(ctx.evidence_in_context), str(f)))
    runs: list[tuple[str, bool | None, float]] = [("base", None, 1.0)]   # (label, adapter on, its scale)
    if args.adapter:
        scales = [float(x) for x in args.scales.split(",")]
        runs = [("base", False, 1.0)] * (not args.no_base) + [(f"adapter {args.adapter} x{s:g}", True, s)
                                                               for s in scales]
    results = []
    for label, on, scale in runs:
        if on is not None:
            gen.use_adapter(on, scale)
        print(f"{label} ({gen.entry.name}), rag, {len(prompts)} questions:")
        results.append((label, score(gen, answerer, prompts, refusal)))
    for label, rows in results:
        for f in files:
            table(f"{label}, {f}", [r for r in rows if r["file"] == str(f)])


if __name__ == "__main__":
    main()
