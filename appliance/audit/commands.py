"""`appliance audit verify|sql`."""
from __future__ import annotations

import argparse

from appliance import cliutil


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit import AuditStore

    ws = cliutil.workspace(args)
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

    cliutil.emit(args, payload, human)
    return cliutil.EXIT_OK if rep.ok else cliutil.EXIT_PROBLEM


def cmd_audit_sql(args: argparse.Namespace) -> int:
    from appliance.audit import query

    ws = cliutil.workspace(args)
    names, rows = query(ws.audit_path, args.sql)

    def human() -> None:
        cells = [[("NULL" if v is None else str(v)).replace("\n", "⏎") for v in row] for row in rows]
        widths = [min(60, max([len(n)] + [len(r[i]) for r in cells])) for i, n in enumerate(names)]
        print(" | ".join(n.ljust(w) for n, w in zip(names, widths)))
        print("-+-".join("-" * w for w in widths))
        for r in cells:
            print(" | ".join((v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(r, widths)))
        print(f"({len(rows)} rows)")

    cliutil.emit(args, [dict(zip(names, r)) for r in rows], human)
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", parents=[common], help="the audit store: verify the chain, query it read-only")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = asub.add_parser("verify", parents=[common], help="report any edited or deleted row (exit 1 if any)")
    p.add_argument("--expect-head", metavar="HASH", help="a head hash noted earlier: fail if that run is gone")
    p.set_defaults(func=cmd_audit_verify)
    p = asub.add_parser("sql", parents=[common], help="run one read-only SELECT (writes are refused)")
    p.add_argument("sql")
    p.set_defaults(func=cmd_audit_sql)
