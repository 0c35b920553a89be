"""`appliance ingest`."""
from __future__ import annotations

import argparse
from pathlib import Path

from appliance import cliutil
from appliance.choices import CHUNKERS


def cmd_ingest(args: argparse.Namespace) -> int:
    from appliance.ingest import ingest

    ws = cliutil.workspace(args)
    if args.chunker:
        ws.config.ingest.chunker = args.chunker
        ws.config.validate()
    with cliutil.progress(args) as progress:
        report = ingest(ws, [Path(p) for p in args.paths], groups=cliutil.groups(args.groups), prune=args.prune,
                        progress=progress, command=cliutil.command())

    def human() -> None:
        for f in report.files:
            if f.status in ("skipped", "removed") or f.warnings:
                print(f"  {f.status:<9} {f.path}: {f.detail or '; '.join(f.warnings)}")
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
        print(f"{counts}; {report.chunks_total} chunks in the index; {report.seconds:.1f} s; run {report.run_id}")
        if report.embed_chunks_per_s:
            print(f"  embedded {report.chunks_embedded} chunks in {report.embed_seconds:.1f} s "
                  f"({report.embed_chunks_per_s} chunks/s)")
        if report.over_window:
            print(f"  note: {report.over_window} new chunks exceed the embedder's {report.embedder_window}-piece window "
                  f"(their tails are not embedded, but remain searchable by full text)")

    cliutil.emit(args, report.to_dict(), human)
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ingest", parents=[common], help="parse, chunk and index documents (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--groups", help="access groups (comma-separated) that may see these documents")
    p.add_argument("--chunker", choices=CHUNKERS, help="override ingest.chunker")
    p.add_argument("--prune", action="store_true", help="remove indexed files that vanished from the given folders")
    p.set_defaults(func=cmd_ingest)
