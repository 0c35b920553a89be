"""`appliance eval retrieval|answers|rejudge|crosscheck`, `appliance compare` and `appliance gold check`."""
from __future__ import annotations

import argparse
from pathlib import Path

from appliance import cliutil
from appliance.choices import CONDITIONS, RETRIEVAL_MODES, STRATEGIES


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from appliance.evaluation.retrieval import evaluate_retrieval

    ws = cliutil.workspace(args)
    summary = evaluate_retrieval(ws, Path(args.questions), k=args.k, mode=args.mode, groups=cliutil.caller_groups(args.groups, ws),
                                 command=cliutil.command())

    def human() -> None:
        for q in summary["questions"]:
            mark = f"rank {q['rank']}" if q["retrieved"] else ("MISS (not in index)" if not q["in_index"] else "MISS")
            print(f"  {q['id']:<6} {q['kind']:<10} {mark:<20} {', '.join(dict.fromkeys(q['top_files']))[:80]}")
        print(f"recall@{summary['k']} {summary['recall_at_k']:.3f}  MRR {summary['mrr']:.3f}  "
              f"({summary['n']} answerable questions, mode {summary['mode']}, run {summary['run_id']})")
        for kind, b in summary["by_kind"].items():
            print(f"  {kind:<10} n={b['n']:<3} recall@{summary['k']} {b['recall_at_k']:.3f}  MRR {b['mrr']:.3f}")

    cliutil.emit(args, summary, human)
    return cliutil.EXIT_OK


def cmd_eval_answers(args: argparse.Namespace) -> int:
    from appliance.evaluation.answers import evaluate_answers

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        summary = evaluate_answers(ws, Path(args.questions) if args.questions else None, conditions=args.conditions,
                                   strategy=args.strategy, model=args.model, groups=cliutil.caller_groups(args.groups, ws),
                                   limit=args.limit, progress=progress, command=cliutil.command(), resume=args.resume,
                                   adapter=args.adapter)
    cliutil.emit(args, summary, lambda: _print_eval_summary(summary))
    return cliutil.EXIT_OK


def _print_eval_summary(summary: dict) -> None:
    print(f"{'condition':<12} {'n':>3} {'accuracy':>9} {'unans. refused':>15} {'tokens':>7} {'s/q':>6}  failures")
    for cond, s in summary["conditions"].items():
        fails = ", ".join(f"{k} {v}" for k, v in sorted(s["failures"].items()))
        print(f"{cond:<12} {s['n']:>3} {s['accuracy']:>9.1%} {s['unanswerable_refused']:>15} "
              f"{s['prompt_tokens_mean']:>7} {s['seconds_per_question'] or '-':>6}  {fails}")
    print(f"run {summary['run_id']}; reports: {', '.join(summary['reports'])}")


def cmd_eval_rejudge(args: argparse.Namespace) -> int:
    from appliance.evaluation.rejudge import rejudge_run

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        summary = rejudge_run(ws, args.run, Path(args.questions) if args.questions else None, progress=progress,
                              command=cliutil.command())
    cliutil.emit(args, summary, lambda: _print_eval_summary(summary))
    return cliutil.EXIT_OK


def cmd_eval_crosscheck(args: argparse.Namespace) -> int:
    from appliance.evaluation.crosscheck import crosscheck_run

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        r = crosscheck_run(ws, args.run, args.max, progress=progress, command=cliutil.command())

    def human() -> None:
        share = "n/a" if r["agreement"] is None else f"{r['agreement']:.1%}"
        print(f"the judge model agrees with the checks on {r['agree']} of {r['asked']} check-settled answers ({share});"
              f" {r['check_settled']} were check-settled in run {r['of']}")
        for method, m in r["by_method"].items():
            print(f"  {method:<9} {m['agree']}/{m['asked']}")
        print(f"run {r['run_id']}")

    cliutil.emit(args, r, human)
    return cliutil.EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from appliance.evaluation.compare import compare_runs

    ws = cliutil.workspace(args)
    result = compare_runs(ws, args.run_a, args.run_b, condition=args.condition, command=cliutil.command())

    def human() -> None:
        for cond, t in result["conditions"].items():
            print(f"{cond}: n={t['n']}  A {t['accuracy_a']:.1%}  B {t['accuracy_b']:.1%}  right only in A {t['a_only']}, "
                  f"only in B {t['b_only']}  McNemar p={t['p_value']:.4f}  CI(B-A) [{t['ci_low']:+.3f}, "
                  f"{t['ci_high']:+.3f}]  -> {t['verdict']}")
            for f in t["flips"]:
                print(f"    {f['question_id']:<6} {f['kind']:<12} A {f['a']:<10} B {f['b']:<10} "
                      f"({f['a_failure']} -> {f['b_failure']})")
            if t["regressions"]:
                print(f"    regressions (right in A, wrong in B): {', '.join(t['regressions'])}")
            if t["evidence_split"]:
                print("    " + "; ".join(f"evidence {part} in training n={x['n']}: A {x['accuracy_a']} B {x['accuracy_b']}"
                                         for part, x in t["evidence_split"].items()))
        if result["adapter_a"] or result["adapter_b"]:
            print(f"adapters: A {', '.join(result['adapter_a']) or 'none'}; B {', '.join(result['adapter_b']) or 'none'}"
                  + (f" (seen/unseen from dataset {result['evidence_seen_from']})" if result["evidence_seen_from"] else ""))
        print(f"run {result['run_id']}; reports: {', '.join(result['reports'])}")

    cliutil.emit(args, result, human)
    return cliutil.EXIT_OK


def cmd_gold_check(args: argparse.Namespace) -> int:
    from appliance.evaluation.goldcheck import check_gold

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        result = check_gold(ws, Path(args.questions), answer_field=args.answer_field, use_judge=args.judge,
                            progress=progress, command=cliutil.command())

    def human() -> None:
        for f in result["findings"]:
            if f["status"] != "ok":
                print(f"  {f['question_id']:<6} {f['status'].upper()}: {f['reason']}")
                if f["passage"]:
                    print(f"         passage: {f['passage'][:200]}")
        print(f"{result['flagged']} of {result['n']} gold answers flagged; run {result['run_id']}")

    cliutil.emit(args, result, human)
    return cliutil.EXIT_PROBLEM if result["flagged"] else cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ev = sub.add_parser("eval", parents=[common], help="evaluate against a golden question set")
    esub = ev.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    p = esub.add_parser("retrieval", parents=[common], help="gold-evidence recall@k and MRR, per question")
    p.add_argument("--questions", required=True, metavar="FILE", help="golden set (JSONL)")
    p.add_argument("-k", type=int)
    p.add_argument("--mode", choices=RETRIEVAL_MODES)
    p.add_argument("--groups", help="access groups added to every question's own")
    p.set_defaults(func=cmd_eval_retrieval)
    p = esub.add_parser("answers", parents=[common], help="answer, judge and attribute failures per condition")
    p.add_argument("--questions", metavar="FILE", help="golden set (JSONL)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a killed run (its own questions, conditions, "
                   "strategy and model) from the first question it did not finish")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated: {','.join(CONDITIONS)}")
    p.add_argument("--strategy", default="single", choices=STRATEGIES)
    p.add_argument("--model", help="model name (models/manifest.toml or the workspace's; default models.generator)")
    p.add_argument("--adapter", help=f"{cliutil.ADAPTER_HELP}, loaded on --model (default: the model it was "
                   "trained on)")
    p.add_argument("--groups", help="access groups added to every question's own")
    p.add_argument("--limit", type=int, help="only the first N questions (a quick look)")
    p.set_defaults(func=cmd_eval_answers)
    p = esub.add_parser("rejudge", parents=[common], help="judge an earlier run's answers again (current judge and "
                        "answer key) as a new run")
    p.add_argument("run", metavar="RUN_ID", help="an `eval answers` run (a unique prefix is enough)")
    p.add_argument("--questions", metavar="FILE", help="golden set to judge against (default: the run's own)")
    p.set_defaults(func=cmd_eval_rejudge)
    p = esub.add_parser("crosscheck", parents=[common], help="ask the judge model about answers the deterministic "
                        "checks settled, and record how often the two agree")
    p.add_argument("run", metavar="RUN_ID", help="an `eval answers` run (a unique prefix is enough)")
    p.add_argument("--max", type=int, help="answers asked at most (default ladder.judge_crosscheck)")
    p.set_defaults(func=cmd_eval_crosscheck)

    p = sub.add_parser("compare", parents=[common], help="per-question flips and paired statistics of two runs")
    p.add_argument("run_a", metavar="RUN_A", help="baseline run id (a unique prefix is enough)")
    p.add_argument("run_b", metavar="RUN_B", help="candidate run id")
    p.add_argument("--condition", choices=CONDITIONS, help="only this condition")
    p.set_defaults(func=cmd_compare)

    gold = sub.add_parser("gold", parents=[common], help="golden sets: check the answer key against its sources")
    gsub = gold.add_subparsers(dest="gold_command", required=True, metavar="ACTION")
    p = gsub.add_parser("check", parents=[common], help="flag gold answers their evidence does not support (exit 1)")
    p.add_argument("--questions", required=True, metavar="FILE", help="golden set (JSONL)")
    p.add_argument("--answer-field", default="answer", help="check this field instead of `answer` (e.g. lab_expected)")
    p.add_argument("--judge", action="store_true",
                   help="also ask the local judge model about answers the checks pass (noisy with a 0.5B model)")
    p.set_defaults(func=cmd_gold_check)
