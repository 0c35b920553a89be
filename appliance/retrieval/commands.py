"""`appliance search`."""
from __future__ import annotations

import argparse

from appliance import cliutil
from appliance.choices import RETRIEVAL_MODES


def cmd_search(args: argparse.Namespace) -> int:
    from appliance.retrieval import Retriever

    ws = cliutil.workspace(args)
    result = Retriever(ws.config, ws.index_dir).search(args.query, k=args.k, mode=args.mode,
                                                       groups=cliutil.caller_groups(args.groups, ws))
    payload = {"query": result.query, "mode": result.mode, "k": result.k, "groups": result.groups,
               "latency_ms": result.latency_ms, "hits": [h.to_dict() for h in result.hits]}

    def human() -> None:
        for h in result.hits:
            page = f" p.{h.page_start}" if h.page_start else ""
            print(f"#{h.rank} {h.score:.4f}  {h.file_name}{page}  {h.section[:70]}")
            print("    " + h.text[:400].replace("\n", "\n    "))
        print(f"({len(result.hits)} hits, {result.mode}, {result.latency_ms:.0f} ms)")

    cliutil.emit(args, payload, human)
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("search", parents=[common], help="retrieve the chunks that best match a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, help="number of hits (default retrieval.k)")
    p.add_argument("--mode", choices=RETRIEVAL_MODES, help="default retrieval.mode")
    p.add_argument("--groups", help="the caller's access groups (comma-separated)")
    p.set_defaults(func=cmd_search)
