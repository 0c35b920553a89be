"""`appliance audit verify|sql`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance import cliutil
from appliance.errors import UsageError


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit import AuditStore, checkpoint

    ws = cliutil.workspace(args)
    cps = tuple(checkpoint.load(Path(args.checkpoints))) if args.checkpoints else ()
    public = checkpoint.load_public_key(Path(args.pubkey)) if args.pubkey else None
    if public is not None and not cps:
        raise UsageError("--pubkey checks the signatures of checkpoints: give --checkpoints FILE too")
    with AuditStore(ws.audit_path) as store:
        rep = store.verify(tuple(args.expect_head or ()), cps, public)
    payload = rep.to_dict() | {"store": str(ws.audit_path), "checkpoints": len(cps)}

    def human() -> None:
        for f in rep.findings:
            print(f"  {f}")
        against = f", consistent with {len(cps)} checkpoint(s)" if cps and rep.ok else ""
        print(f"{ws.audit_path}: {rep.runs} runs, {rep.rows} chained rows: {rep.verdict()}{against}")
        if rep.head:
            print(f"head {rep.head} ({rep.size} rows): keep it elsewhere, or `appliance audit checkpoint`, to "
                  f"detect any later change")

    cliutil.emit(args, payload, human)
    return cliutil.EXIT_OK if rep.ok else cliutil.EXIT_PROBLEM


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from appliance.audit import AuditStore, checkpoint

    ws = cliutil.workspace(args)
    out = Path(args.file).resolve()
    if out.is_relative_to(ws.root.resolve()):
        raise UsageError(f"{out} is inside the workspace: a checkpoint must be kept where whoever can write the "
                         f"store cannot (give --file elsewhere)")
    key = Path(args.sign) if args.sign else None
    earlier = tuple(checkpoint.load(out)) if out.is_file() else ()
    with AuditStore(ws.audit_path) as store:
        rep = store.verify(checkpoints=earlier)  # also a consistent extension of every checkpoint already kept
        if rep.damage:
            for f in rep.damage:
                print(f"  {f}", file=sys.stderr)
            print(f"{ws.audit_path} does not verify{' against ' + str(out) if earlier else ''}: no checkpoint made "
                  f"(it would vouch for a damaged store)", file=sys.stderr)
            return cliutil.EXIT_PROBLEM
        cp = checkpoint.make(ws.audit_path.resolve(), rep, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(cp, sort_keys=True) + "\n")
    with ws.run("audit-checkpoint") as run:  # the store knows it was checkpointed, and where (reports print it)
        run.event("checkpoint", size=cp["size"], entries=cp["entries"], head=cp["head"], time=cp["time"],
                  key_id=cp["key_id"], file=str(out))

    def human() -> None:
        signed = f"signed by key {cp['key_id']}" if cp["key_id"] else "unsigned"
        print(f"checkpoint {cp['time']}: {cp['size']} rows, {cp['entries']} ledger entries, head {cp['head']} "
              f"({signed}), appended to {out}")

    cliutil.emit(args, cp, human)
    return cliutil.EXIT_OK


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    from appliance.audit import checkpoint

    path = Path(args.out)
    pub, kid = checkpoint.keygen(path)
    cliutil.emit(args, {"private_key": str(path), "public_key": str(pub), "key_id": kid},
                 lambda: print(f"Ed25519 key {kid}: private {path} (mode 600: keep it off this machine's "
                               f"workspace), public {pub} (give it to whoever verifies)"))
    return cliutil.EXIT_OK


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
    p = asub.add_parser("verify", parents=[common], help="report any edited, deleted or inserted row (exit 1 if any)")
    p.add_argument("--expect-head", metavar="HASH", action="append",
                   help="a head noted earlier: fail unless the store still extends it (repeatable)")
    p.add_argument("--checkpoints", metavar="FILE", help="checkpoints kept elsewhere: fail unless the store is a "
                                                         "consistent extension of every one")
    p.add_argument("--pubkey", metavar="KEY", help="the public key every checkpoint must be signed with")
    p.set_defaults(func=cmd_audit_verify)
    p = asub.add_parser("checkpoint", parents=[common],
                        help="write the store's head down outside it (verifies first; optionally signed)")
    p.add_argument("--file", default="audit-checkpoints.jsonl",
                   help="the checkpoint file to append to, outside the workspace (default: ./audit-checkpoints.jsonl)")
    p.add_argument("--sign", metavar="KEYFILE", help="an Ed25519 private key (from `appliance audit keygen`)")
    p.set_defaults(func=cmd_audit_checkpoint)
    p = asub.add_parser("keygen", parents=[common], help="make an Ed25519 key pair for signing checkpoints")
    p.add_argument("--out", required=True, metavar="PATH", help="the private key's path (PATH.pub: the public key)")
    p.set_defaults(func=cmd_audit_keygen)
    p = asub.add_parser("sql", parents=[common], help="run one read-only SELECT (writes are refused)")
    p.add_argument("sql")
    p.set_defaults(func=cmd_audit_sql)
