"""The `appliance` command. Every subcommand takes --workspace DIR, --json and --set section.key=value.

Exit codes: 0 success; 1 the command ran and found a problem (doctor, audit verify); 2 bad input or usage.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.config import ConfigError
from appliance.models import ModelError
from appliance.workspace import default_root, init_workspace, open_workspace

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def _emit(args: argparse.Namespace, payload: Any, human: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default))
    else:
        human()


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _workspace(args: argparse.Namespace, create: bool = True):
    return open_workspace(Path(args.workspace) if args.workspace else None, args.set, create=create)


def cmd_init(args: argparse.Namespace) -> int:
    ws = init_workspace(Path(args.workspace) if args.workspace else default_root(), args.set)
    _emit(args, {"workspace": str(ws.root), "config": str(ws.config_path), "audit": str(ws.audit_path)},
          lambda: print(f"workspace ready at {ws.root}\n  config: {ws.config_path}\n  audit:  {ws.audit_path}"))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from appliance.doctor import report, run_checks

    ws = _workspace(args, create=False)
    checks = run_checks(ws.config, full=args.full)
    result = report(checks) | {"workspace": str(ws.root)}

    def human() -> None:
        for c in checks:
            print(f"  [{c.status:^4}] {c.name:<34} {c.detail}")
        print("ready" if result["ok"] else "NOT READY: fix the [fail] lines above")

    _emit(args, result, human)
    return EXIT_OK if result["ok"] else EXIT_PROBLEM


def _command() -> str:
    return shlex.join(["appliance", *sys.argv[1:]])


def cmd_ask(args: argparse.Namespace) -> int:
    from appliance.ask import ask

    ws = _workspace(args)
    result = ask(ws, args.question, rag=not args.no_rag, strategy=args.strategy, model=args.model,
                 groups=_groups(args.groups), command=_command())

    def human() -> None:
        print(result.answer + "\n")
        for s in result.sources:
            print(f"  [{s['rank']}] {s['file']}" + (f" p.{s['page']}" if s["page"] else "") + f"  {s['section'][:60]}")
        print(f"— {result.model} (sha256 {result.model_sha256[:12]}…), {result.condition}, {result.strategy}, "
              f"{result.prompt_tokens}+{result.completion_tokens} tokens, {result.latency_ms / 1000:.1f} s, "
              f"run {result.run_id}")

    _emit(args, result.to_dict(), human)
    return EXIT_OK


def _groups(value: str | None) -> list[str]:
    return [g.strip() for g in (value or "").split(",") if g.strip()]


def cmd_ingest(args: argparse.Namespace) -> int:
    from appliance.ingest import ingest

    ws = _workspace(args)
    if args.chunker:
        ws.config.ingest.chunker = args.chunker
        ws.config.validate()
    progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = ingest(ws, [Path(p) for p in args.paths], groups=_groups(args.groups), prune=args.prune,
                    progress=progress, command=_command())

    def human() -> None:
        for f in report.files:
            if f.status in ("skipped", "removed") or f.warnings:
                print(f"  {f.status:<9} {f.path}: {f.detail or '; '.join(f.warnings)}")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
        print(f"{counts}; {report.chunks_total} chunks in the index; {report.seconds:.1f} s; run {report.run_id}")
        if report.over_window:
            print(f"  note: {report.over_window} new chunks exceed the embedder's {report.embedder_window}-piece window "
                  f"(their tails are not embedded, but remain searchable by full text)")

    _emit(args, report.to_dict(), human)
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from appliance.retrieval import Retriever

    ws = _workspace(args)
    result = Retriever(ws.config, ws.index_dir).search(args.query, k=args.k, mode=args.mode,
                                                       groups=_groups(args.groups))
    payload = {"query": result.query, "mode": result.mode, "k": result.k, "groups": result.groups,
               "latency_ms": result.latency_ms, "hits": [h.to_dict() for h in result.hits]}

    def human() -> None:
        for h in result.hits:
            page = f" p.{h.page_start}" if h.page_start else ""
            print(f"#{h.rank} {h.score:.4f}  {h.file_name}{page}  {h.section[:70]}")
            print("    " + h.text[:400].replace("\n", "\n    "))
        print(f"({len(result.hits)} hits, {result.mode}, {result.latency_ms:.0f} ms)")

    _emit(args, payload, human)
    return EXIT_OK


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from appliance.evaluation.retrieval import evaluate_retrieval

    ws = _workspace(args)
    summary = evaluate_retrieval(ws, Path(args.questions), k=args.k, mode=args.mode, groups=_groups(args.groups),
                                 command=_command())

    def human() -> None:
        for q in summary["questions"]:
            mark = f"rank {q['rank']}" if q["retrieved"] else ("MISS (not in index)" if not q["in_index"] else "MISS")
            print(f"  {q['id']:<6} {q['kind']:<10} {mark:<20} {', '.join(dict.fromkeys(q['top_files']))[:80]}")
        print(f"recall@{summary['k']} {summary['recall_at_k']:.3f}  MRR {summary['mrr']:.3f}  "
              f"({summary['n']} answerable questions, mode {summary['mode']}, run {summary['run_id']})")
        for kind, b in summary["by_kind"].items():
            print(f"  {kind:<10} n={b['n']:<3} recall@{summary['k']} {b['recall_at_k']:.3f}  MRR {b['mrr']:.3f}")

    _emit(args, summary, human)
    return EXIT_OK


def _stderr_progress(args: argparse.Namespace):
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def cmd_eval_answers(args: argparse.Namespace) -> int:
    from appliance.evaluation.answers import evaluate_answers

    ws = _workspace(args)
    summary = evaluate_answers(ws, Path(args.questions) if args.questions else None, conditions=args.conditions,
                               strategy=args.strategy, model=args.model, groups=_groups(args.groups), limit=args.limit,
                               progress=_stderr_progress(args), command=_command(), resume=args.resume)

    _emit(args, summary, lambda: _print_eval_summary(summary))
    return EXIT_OK


def _print_eval_summary(summary: dict) -> None:
    print(f"{'condition':<12} {'n':>3} {'accuracy':>9} {'unans. refused':>15} {'tokens':>7} {'s/q':>6}  failures")
    for cond, s in summary["conditions"].items():
        fails = ", ".join(f"{k} {v}" for k, v in sorted(s["failures"].items()))
        print(f"{cond:<12} {s['n']:>3} {s['accuracy']:>9.1%} {s['unanswerable_refused']:>15} "
              f"{s['prompt_tokens_mean']:>7} {s['seconds_per_question']:>6}  {fails}")
    print(f"run {summary['run_id']}; reports: {', '.join(summary['reports'])}")


def cmd_eval_rejudge(args: argparse.Namespace) -> int:
    from appliance.evaluation.rejudge import rejudge_run

    ws = _workspace(args)
    summary = rejudge_run(ws, args.run, Path(args.questions) if args.questions else None,
                          progress=_stderr_progress(args), command=_command())
    _emit(args, summary, lambda: _print_eval_summary(summary))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from appliance.evaluation.compare import compare_runs

    ws = _workspace(args)
    result = compare_runs(ws, args.run_a, args.run_b, condition=args.condition, command=_command())

    def human() -> None:
        for cond, t in result["conditions"].items():
            print(f"{cond}: n={t['n']}  A {t['accuracy_a']:.1%}  B {t['accuracy_b']:.1%}  right only in A {t['a_only']}, "
                  f"only in B {t['b_only']}  McNemar p={t['p_value']:.4f}  CI(B-A) [{t['ci_low']:+.3f}, "
                  f"{t['ci_high']:+.3f}]  -> {t['verdict']}")
            for f in t["flips"]:
                print(f"    {f['question_id']:<6} {f['kind']:<12} A {f['a']:<10} B {f['b']:<10} "
                      f"({f['a_failure']} -> {f['b_failure']})")
        print(f"run {result['run_id']}; reports: {', '.join(result['reports'])}")

    _emit(args, result, human)
    return EXIT_OK


def cmd_gold_check(args: argparse.Namespace) -> int:
    from appliance.evaluation.goldcheck import check_gold

    ws = _workspace(args)
    result = check_gold(ws, Path(args.questions), answer_field=args.answer_field, use_judge=args.judge,
                        progress=_stderr_progress(args), command=_command())

    def human() -> None:
        for f in result["findings"]:
            if f["status"] != "ok":
                print(f"  {f['question_id']:<6} {f['status'].upper()}: {f['reason']}")
                if f["passage"]:
                    print(f"         passage: {f['passage'][:200]}")
        print(f"{result['flagged']} of {result['n']} gold answers flagged; run {result['run_id']}")

    _emit(args, result, human)
    return EXIT_PROBLEM if result["flagged"] else EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit import AuditStore

    ws = _workspace(args)
    with AuditStore(ws.audit_path) as store:
        rep = store.verify()
        head = store.head()
        if args.expect_head:
            store.check_head(args.expect_head, rep)
    payload = rep.to_dict() | {"store": str(ws.audit_path), "head": head}

    def human() -> None:
        for f in rep.findings:
            print(f"  {f}")
        verdict = "intact" if rep.ok else f"TAMPERING OR LOSS DETECTED ({len(rep.findings)} findings)"
        print(f"{ws.audit_path}: {rep.runs} runs, {rep.rows} chained rows: {verdict}")
        if head:
            print(f"head {head} (keep it elsewhere to detect a later deletion of the newest run)")

    _emit(args, payload, human)
    return EXIT_OK if rep.ok else EXIT_PROBLEM


def cmd_audit_sql(args: argparse.Namespace) -> int:
    from appliance.audit import query

    ws = _workspace(args)
    names, rows = query(ws.audit_path, args.sql)

    def human() -> None:
        cells = [[("NULL" if v is None else str(v)).replace("\n", "⏎") for v in row] for row in rows]
        widths = [min(60, max([len(n)] + [len(r[i]) for r in cells])) for i, n in enumerate(names)]
        print(" | ".join(n.ljust(w) for n, w in zip(names, widths)))
        print("-+-".join("-" * w for w in widths))
        for r in cells:
            print(" | ".join((v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(r, widths)))
        print(f"({len(rows)} rows)")

    _emit(args, [dict(zip(names, r)) for r in rows], human)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from appliance.models import load_manifest

    ws = _workspace(args)
    manifest = load_manifest(ws.config.models_dir)
    rows = [{"name": m.name, "role": m.role, "file": m.file, "sha256": m.sha256, "size": m.size,
             "licence": m.licence, "default_for": [r for r, n in manifest.defaults.items() if n == m.name]}
            for m in manifest.models]
    _emit(args, rows, lambda: [print(f"  {r['name']:<30} {r['role']:<15} {r['size'] / 1e6:7.1f} MB  {r['licence']:<20} "
                                     f"{'default ' + ','.join(r['default_for']) if r['default_for'] else ''}") for r in rows])
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the TUI and the docs)."""
    # SUPPRESS: an option given before the subcommand is not reset by the subcommand's own default
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", metavar="DIR", default=argparse.SUPPRESS,
                        help="workspace directory (default ./workspace or $APPLIANCE_WORKSPACE)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output on stdout")
    common.add_argument("--set", action="append", default=argparse.SUPPRESS, metavar="SECTION.KEY=VALUE",
                        help="override a config value")

    parser = argparse.ArgumentParser(prog="appliance", description=__doc__.splitlines()[0], parents=[common])
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[common], help="create a workspace (config.toml, audit store)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("doctor", parents=[common], help="check Python, backend, models and offline readiness")
    p.add_argument("--full", action="store_true", help="re-hash every model file instead of trusting the last check")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("ask", parents=[common], help="answer one question (recorded in the audit store)")
    p.add_argument("question")
    p.add_argument("--no-rag", action="store_true", help="closed-book: the model's own knowledge, no documents")
    p.add_argument("--strategy", default="single", choices=["single", "best-of-n", "self-consistency", "council"])
    p.add_argument("--model", help="model name from models/manifest.toml (default: config models.generator)")
    p.add_argument("--groups", help="the caller's access groups (comma-separated)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("ingest", parents=[common], help="parse, chunk and index documents (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--groups", help="access groups (comma-separated) that may see these documents")
    p.add_argument("--chunker", choices=["structure", "window"], help="override ingest.chunker")
    p.add_argument("--prune", action="store_true", help="remove indexed files that vanished from the given folders")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", parents=[common], help="retrieve the chunks that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, help="number of hits (default retrieval.k)")
    p.add_argument("--mode", choices=["vector", "fts", "hybrid"], help="default retrieval.mode")
    p.add_argument("--groups", help="the caller's access groups (comma-separated)")
    p.set_defaults(func=cmd_search)

    ev = sub.add_parser("eval", parents=[common], help="evaluate against a golden question set")
    esub = ev.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    p = esub.add_parser("retrieval", parents=[common], help="gold-evidence recall@k and MRR, per question")
    p.add_argument("--questions", required=True, metavar="FILE", help="golden set (JSONL)")
    p.add_argument("-k", type=int)
    p.add_argument("--mode", choices=["vector", "fts", "hybrid"])
    p.add_argument("--groups", help="access groups added to every question's own")
    p.set_defaults(func=cmd_eval_retrieval)
    p = esub.add_parser("answers", parents=[common], help="answer, judge and attribute failures per condition")
    p.add_argument("--questions", metavar="FILE", help="golden set (JSONL)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a killed run (its own questions, conditions, "
                   "strategy and model) from the first question it did not finish")
    p.add_argument("--conditions", default="closed-book,oracle,rag", help="comma-separated: closed-book,oracle,rag")
    p.add_argument("--strategy", default="single", choices=["single", "best-of-n", "self-consistency", "council"])
    p.add_argument("--model", help="model name from models/manifest.toml (default: config models.generator)")
    p.add_argument("--groups", help="access groups added to every question's own")
    p.add_argument("--limit", type=int, help="only the first N questions (a quick look)")
    p.set_defaults(func=cmd_eval_answers)
    p = esub.add_parser("rejudge", parents=[common], help="judge an earlier run's answers again (current judge and "
                        "answer key) as a new run")
    p.add_argument("run", metavar="RUN_ID", help="an `eval answers` run (a unique prefix is enough)")
    p.add_argument("--questions", metavar="FILE", help="golden set to judge against (default: the run's own)")
    p.set_defaults(func=cmd_eval_rejudge)

    p = sub.add_parser("compare", parents=[common], help="per-question flips and paired statistics of two runs")
    p.add_argument("run_a", metavar="RUN_A", help="baseline run id (a unique prefix is enough)")
    p.add_argument("run_b", metavar="RUN_B", help="candidate run id")
    p.add_argument("--condition", choices=["closed-book", "oracle", "rag"], help="only this condition")
    p.set_defaults(func=cmd_compare)

    gold = sub.add_parser("gold", parents=[common], help="golden sets: check the answer key against its sources")
    gsub = gold.add_subparsers(dest="gold_command", required=True, metavar="ACTION")
    p = gsub.add_parser("check", parents=[common], help="flag gold answers their evidence does not support (exit 1)")
    p.add_argument("--questions", required=True, metavar="FILE", help="golden set (JSONL)")
    p.add_argument("--answer-field", default="answer", help="check this field instead of `answer` (e.g. lab_expected)")
    p.add_argument("--judge", action="store_true",
                   help="also ask the local judge model about answers the checks pass (noisy with a 0.5B model)")
    p.set_defaults(func=cmd_gold_check)

    p = sub.add_parser("models", parents=[common], help="list the models of models/manifest.toml")
    p.set_defaults(func=cmd_models)

    audit = sub.add_parser("audit", parents=[common], help="the audit store: verify the chain, query it read-only")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = asub.add_parser("verify", parents=[common], help="report any edited or deleted row (exit 1 if any)")
    p.add_argument("--expect-head", metavar="HASH", help="a head hash noted earlier: fail if that run is gone")
    p.set_defaults(func=cmd_audit_verify)
    p = asub.add_parser("sql", parents=[common], help="run one read-only SELECT (writes are refused)")
    p.add_argument("sql")
    p.set_defaults(func=cmd_audit_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `appliance` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("workspace", None), ("json", False), ("set", [])):
        if not hasattr(args, name):
            setattr(args, name, default)
    from appliance.audit import AuditError, ReadOnlyQueryError

    try:
        return args.func(args)
    except ReadOnlyQueryError as e:
        print(f"appliance: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ConfigError, ModelError, AuditError, ValueError, FileNotFoundError) as e:
        print(f"appliance: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("appliance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
