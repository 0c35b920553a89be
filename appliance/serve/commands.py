"""`appliance serve` and `appliance apikey`."""
from __future__ import annotations

import argparse
from pathlib import Path

from appliance import cliutil


def cmd_serve(args: argparse.Namespace) -> int:
    from appliance.serve.server import serve

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        serve(ws, args.model, args.adapter, args.host, args.port, Path(args.keys) if args.keys else None,
              progress=progress, command=cliutil.command())
    return cliutil.EXIT_OK


def cmd_apikey(args: argparse.Namespace) -> int:
    from appliance.serve.keys import add_key

    key = add_key(Path(args.keys), args.id, cliutil.groups(args.groups))
    cliutil.emit(args, {"id": args.id, "key": key, "keys_file": args.keys}, lambda: print(
        f"{key}\n(key {args.id!r} added to {args.keys}; it is shown only now, only its sha256 is kept)"))
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="an OpenAI-compatible endpoint (and model `rag`), audited")
    p.add_argument("--model", help="model name (default models.generator, or the adapter's base)")
    p.add_argument("--adapter", help=f"{cliutil.ADAPTER_HELP}, loaded on the model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (not loopback: --keys is required)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--keys", metavar="FILE", help="API keys file (`appliance apikey`); each key has access groups")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("apikey", parents=[common], help="make an API key for the server, mapped to access groups")
    p.add_argument("--keys", required=True, metavar="FILE", help="keys file to append to (created 0600)")
    p.add_argument("--id", required=True, help="a name for the key (recorded with every request)")
    p.add_argument("--groups", help="access groups the key may read (comma-separated; none: public chunks only)")
    p.set_defaults(func=cmd_apikey)
