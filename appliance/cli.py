"""The `appliance` command. Every subcommand takes --workspace DIR, --json and --set section.key=value.

Each package registers its own subcommands (`register(sub, common)` in its commands.py); this module holds the
few that belong to no rung (init, doctor, models, ask), the common options and the error handling.

Exit codes: 0 success; 1 the command ran and found a problem (doctor, audit verify, gold check) or the audit store
could not be used; 2 bad input or usage (UsageError: ConfigError, ModelError, a bad golden set, ...); 130
interrupted or cancelled (the run is left resumable). Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from appliance import __version__, cliutil, interrupts
from appliance.choices import STRATEGIES
from appliance.errors import UsageError
from appliance.workspace import default_root, init_workspace


def cmd_init(args: argparse.Namespace) -> int:
    ws = init_workspace(Path(args.workspace) if args.workspace else default_root(), args.set)
    cliutil.emit(args, {"workspace": str(ws.root), "config": str(ws.config_path), "audit": str(ws.audit_path)},
                 lambda: print(f"workspace ready at {ws.root}\n  config: {ws.config_path}\n  audit:  {ws.audit_path}"))
    return cliutil.EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from appliance.doctor import report, run_checks

    ws = cliutil.workspace(args, create=False)
    checks = run_checks(ws, full=args.full)
    result = report(checks) | {"workspace": str(ws.root)}

    def human() -> None:
        for c in checks:
            print(f"  [{c.status:^4}] {c.name:<34} {c.detail}")
        print("ready" if result["ok"] else "NOT READY: fix the [fail] lines above")

    cliutil.emit(args, result, human)
    return cliutil.EXIT_OK if result["ok"] else cliutil.EXIT_PROBLEM


def cmd_ask(args: argparse.Namespace) -> int:
    from appliance.ask import ask

    ws = cliutil.workspace(args)
    result = ask(ws, args.question, rag=not args.no_rag, strategy=args.strategy, model=args.model,
                 groups=cliutil.caller_groups(args.groups, ws), command=cliutil.command(), adapter=args.adapter)

    def human() -> None:
        print(result.answer + "\n")
        for s in result.sources:
            print(f"  [{s['rank']}] {s['file']}" + (f" p.{s['page']}" if s["page"] else "") + f"  {s['section'][:60]}")
        adapter = f" + {result.adapter} (sha256 {result.adapter_sha256[:12]}…)" if result.adapter else ""
        print(f"— {result.model} (sha256 {result.model_sha256[:12]}…){adapter}, {result.condition}, {result.strategy}, "
              f"{result.prompt_tokens}+{result.completion_tokens} tokens, {result.latency_ms / 1000:.1f} s, "
              f"run {result.run_id}")

    cliutil.emit(args, result.to_dict(), human)
    return cliutil.EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    ws = cliutil.workspace(args)
    catalog = ws.models
    defaults = catalog.manifest.defaults
    rows = [{"name": m.name, "role": m.role, "origin": m.origin, "file": m.file, "sha256": m.sha256, "size": m.size,
             "licence": m.licence, "default_for": [r for r, n in defaults.items() if n == m.name],
             "lineage": m.lineage} for m in catalog.entries()]
    cliutil.emit(args, rows, lambda: [print(
        f"  {r['name']:<30} {r['role']:<15} {r['size'] / 1e6:7.1f} MB  {r['licence']:<20} "
        f"{'default ' + ','.join(r['default_for']) if r['default_for'] else ''}"
        f"{'(workspace)' if r['origin'] == 'workspace' else ''}") for r in rows])
    return cliutil.EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import run

    run(cliutil.workspace(args), args.set)
    return cliutil.EXIT_OK


def _register_core(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="create a workspace (config.toml, audit store)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("doctor", parents=[common], help="check Python, backend, models and offline readiness")
    p.add_argument("--full", action="store_true", help="re-hash every model file instead of trusting the last check")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("ask", parents=[common], help="answer one question (recorded in the audit store)")
    p.add_argument("question")
    p.add_argument("--no-rag", action="store_true", help="closed-book: the model's own knowledge, no documents")
    p.add_argument("--strategy", default="single", choices=STRATEGIES)
    p.add_argument("--model", help="model name (models/manifest.toml or the workspace's; default models.generator)")
    p.add_argument("--adapter", help=f"{cliutil.ADAPTER_HELP}, loaded on the model (default: its base)")
    p.add_argument("--groups", help="the caller's access groups (comma-separated)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("tui", parents=[common], help="the terminal UI (works over SSH; long jobs outlive it)")
    p.set_defaults(func=cmd_tui)

    p = sub.add_parser("models", parents=[common], help="list the models: the bundled manifest's and the workspace's")
    p.set_defaults(func=cmd_models)


def _registrars() -> list[cliutil.Register]:
    from appliance.audit import commands as audit
    from appliance.evaluation import commands as evaluation
    from appliance.export import commands as export
    from appliance.ingest import commands as ingest
    from appliance.jobs import commands as jobs
    from appliance.ladder import commands as ladder
    from appliance.retrieval import commands as retrieval
    from appliance.sdg import commands as sdg
    from appliance.serve import commands as serve
    from appliance.training import commands as training

    return [_register_core, ingest.register, retrieval.register, evaluation.register, sdg.register,
            training.register, export.register, serve.register, ladder.register, jobs.register, audit.register]


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
    for register in _registrars():
        register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `appliance` console script."""
    args = build_parser().parse_args(argv)
    for name, default in (("workspace", None), ("json", False), ("set", [])):
        if not hasattr(args, name):
            setattr(args, name, default)
    from appliance.audit import AuditError

    if threading.current_thread() is threading.main_thread():
        interrupts.install()
    try:
        return args.func(args)
    except BaseException as e:
        if interrupts.is_interrupt(e):
            print("appliance: interrupted (a run in progress is left resumable)", file=sys.stderr)
            return cliutil.EXIT_INTERRUPTED
        if isinstance(e, UsageError):
            print(f"appliance: error: {e}", file=sys.stderr)
            return cliutil.EXIT_USAGE
        if isinstance(e, AuditError):
            print(f"appliance: audit store: {e}", file=sys.stderr)
            return cliutil.EXIT_PROBLEM
        raise


if __name__ == "__main__":
    sys.exit(main())
