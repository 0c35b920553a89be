"""`appliance ladder`, `appliance decide` and `appliance report`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance import cliutil
from appliance.errors import UsageError


def cmd_ladder(args: argparse.Namespace) -> int:
    from appliance.ladder.job import QUICK, Ladder, default_plan

    if args.quick:
        args.set = QUICK + args.set    # the user's own --set still wins
    ws = cliutil.workspace(args)
    plan = default_plan(ws, Path(args.docs) if args.docs else None, Path(args.questions) if args.questions else None,
                        [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None, args.until,
                        cliutil.caller_groups(args.groups, ws))
    with cliutil.progress(args) as progress:
        ladder = Ladder(ws, plan, progress, cliutil.command())
        rows = ladder.preview()
        for r in rows:
            est = ("reuses its finished result" if r["state"] == "reuse" else
                   f"about {r['estimate_s'] / 60:.1f} min ({r['basis']})" if r["estimate_s"] is not None else
                   "estimated when it starts")
            progress.note(f"  plan: {r['rung']:<28} {est}", "ladder")
        result = ladder.ladder()
    result["plan"] = rows

    def human() -> None:
        rec = result["record"]
        print(f"ladder run {result['run_id']}: {result['seconds']:.0f} s")
        if rec:
            print(f"verdict: {rec['verdict']} ({rec['locus']}), rule {rec['rule']}: {rec['because']}")
            print("record: " + ", ".join(rec["paths"]))

    cliutil.emit(args, result, human)
    return cliutil.EXIT_OK


def cmd_decide(args: argparse.Namespace) -> int:
    from appliance.ladder.record import redecide

    ws = cliutil.workspace(args)
    rec = redecide(ws, args.run, cliutil.command())
    cliutil.emit(args, rec, lambda: print(f"verdict: {rec['verdict']} ({rec['locus']}), rule {rec['rule']}: "
                                          f"{rec['because']}\nrecord: {', '.join(rec['paths'])}"))
    return cliutil.EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from appliance.audit import AuditStore, records

    ws = cliutil.workspace(args)
    with AuditStore(ws.audit_path) as store:
        rows = records(store.con, "SELECT run_id, created_at, payload_json FROM events WHERE kind = 'decision_record' "
                                  "ORDER BY created_at DESC")
    out = [{"run_id": r["run_id"], "created_at": r["created_at"]} | {k: json.loads(r["payload_json"])[k] for k in
                                                                      ("verdict", "locus", "rule", "paths")}
           for r in rows]
    if not out and not args.json:
        raise UsageError("no decision record yet: run `appliance ladder`")
    cliutil.emit(args, out, lambda: [print(f"{r['created_at']:%Y-%m-%d %H:%M}  {r['run_id'][:8]}  {r['verdict']:<36} "
                                           f"{r['rule']:<28} {r['paths'][0]}") for r in out])
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from appliance.ladder.job import RUNGS

    p = sub.add_parser("ladder", parents=[common], help="every rung as one resumable job, ending in a decision record")
    p.add_argument("--docs", metavar="DIR", help="the documents (default: the bundled sample corpus)")
    p.add_argument("--questions", metavar="FILE", help="the golden set (default: the bundled sample questions)")
    p.add_argument("--models", metavar="A,B", help="generators to compare (the first is adapted; default "
                   "models.generator)")
    p.add_argument("--until", choices=RUNGS, help="stop after this rung (default: decide)")
    p.add_argument("--groups", help="access groups of the documents and questions (default: public only)")
    p.add_argument("--quick", action="store_true", help="a first look on 2 cores: fewer synthetic "
                   "pairs and probe questions, a capped training run, one scaling strategy (docs/LADDER.md)")
    p.set_defaults(func=cmd_ladder)
    p = sub.add_parser("decide", parents=[common], help="render the decision record again from a ladder's stored runs")
    p.add_argument("--run", metavar="RUN_ID", help="a ladder run (default: the latest)")
    p.set_defaults(func=cmd_decide)
    p = sub.add_parser("report", parents=[common], help="list the decision records")
    p.set_defaults(func=cmd_report)
