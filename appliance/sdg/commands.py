"""`appliance sdg generate|review|dataset|export|probe`."""
from __future__ import annotations

import argparse
from pathlib import Path

from appliance import cliutil
from appliance.choices import EXPORT_FORMATS, SDG_KINDS
from appliance.errors import UsageError


def cmd_generate(args: argparse.Namespace) -> int:
    from appliance.sdg.generate import generate_pairs

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        s = generate_pairs(ws, groups=cliutil.caller_groups(args.groups, ws), golden=[Path(g) for g in args.golden or []],
                           progress=progress, command=cliutil.command(), resume=args.resume)

    def human() -> None:
        print(f"{s['candidates']} candidate pairs ({s['failures']} unparseable after retries), {s['kept']} kept "
              f"({', '.join(f'{k} {v}' for k, v in sorted(s['kept_by_split'].items()))}); "
              f"{s['pairs_per_minute']} candidates/min; {s['seconds']:.0f} s; run {s['run_id']}")
        print("  survival: " + " -> ".join(f"{x['filter']} {x['surviving']}" for x in s["survival"]))
        print(f"  kinds: {', '.join(f'{k} {v}' for k, v in sorted(s['kept_by_kind'].items()))}; "
              f"{s['documents']} documents, {s['sections']} sections")
        if not s["kept"]:
            print("  no pair was kept: the survival line says which filter stopped them; `appliance sdg review list "
                  "--status failed` shows each with its reason")

    cliutil.emit(args, s, human)
    return cliutil.EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from appliance.sdg.review import approve_where, list_pairs, review

    ws = cliutil.workspace(args)
    if args.action == "list":
        rows = list_pairs(ws, args.status, args.kind, args.split, args.limit)

        def human() -> None:
            for p in rows:
                print(f"{p['pair_id']}  [{p['status']}] {p['kind']}/{p['split']}  {p['file_name']} — {p['section'][:50]}")
                print(f"  Q: {p['question']}\n  A: {p['answer']}")
                print("  filters: " + "; ".join(f"{f['filter']} {'ok' if f['passed'] else 'FAIL'}"
                                                + (f" {f['score']}" if f["score"] is not None else "")
                                                + ("" if f["passed"] else f" ({f['detail'][:80]})")
                                                for f in p["filters"]))
                if args.sources:
                    print("  source: " + p["source"][:600].replace("\n", "\n          "))
            print(f"({len(rows)} pairs)")

        cliutil.emit(args, rows, human)
        return cliutil.EXIT_OK
    if args.action == "approve" and args.all:
        result = approve_where(ws, args.reason or "", args.kind, args.split, args.reviewer, cliutil.command())
    else:
        if not args.ids:
            raise UsageError("give pair ids (or --all with approve)")
        result = review(ws, args.ids, args.action, args.reason or "", args.reviewer, args.question, args.answer,
                        cliutil.command())
    cliutil.emit(args, result, lambda: print(f"{result['action']}: {len(result['pairs'])} pairs by "
                                             f"{result['reviewer']} (run {result['run_id']})"))
    return cliutil.EXIT_OK


def cmd_dataset(args: argparse.Namespace) -> int:
    from appliance.sdg.dataset import build_dataset

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        card = build_dataset(ws, unreviewed=args.unreviewed, groups=cliutil.caller_groups(args.groups, ws), progress=progress,
                             command=cliutil.command())
    cliutil.emit(args, card, lambda: print(
        f"dataset {card['dataset_id']}: {card['examples']} examples "
        f"({', '.join(f'{k} {v}' for k, v in card['by_split'].items())}), withheld {card['withheld_share']:.0%}, "
        f"reviewed only: {card['reviewed_only']}; {card['path']}/card.md"))
    return cliutil.EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from appliance.sdg.dataset import export_dataset

    ws = cliutil.workspace(args)
    paths = export_dataset(ws, args.dataset, args.format, Path(args.out) if args.out else None)
    cliutil.emit(args, {"files": [str(p) for p in paths]}, lambda: [print(p) for p in paths])
    return cliutil.EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from appliance.sdg.probe import write_probe

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        r = write_probe(ws, groups=cliutil.caller_groups(args.groups, ws), limit=args.limit, progress=progress,
                        command=cliutil.command())
    cliutil.emit(args, r, lambda: print(
        f"{r['questions']} probe questions from {r['documents']} held-out documents "
        f"({', '.join(f'{n} {s}' for s, n in r['by_split'].items())}), each asked with its evidence "
        f"withheld and present ({r['asked']} in all): {r['path']}\n"
        f"  measure: appliance eval answers --questions {r['path']} --conditions rag"))
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sdg = sub.add_parser("sdg", parents=[common], help="synthetic data from the documents: pairs, review, datasets")
    ssub = sdg.add_subparsers(dest="sdg_command", required=True, metavar="ACTION")
    p = ssub.add_parser("generate", parents=[common], help="write and filter question-answer pairs from the index")
    p.add_argument("--groups", help="also use documents of these access groups (default: only public ones)")
    p.add_argument("--golden", action="append", metavar="FILE", help="a golden set to guard against (repeatable; "
                   "golden sets this workspace evaluated with are guarded against anyway)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a killed generation after its last whole chunk")
    p.set_defaults(func=cmd_generate)

    p = ssub.add_parser("review", parents=[common], help="list, approve, reject or edit pairs")
    p.add_argument("action", choices=["list", "approve", "reject", "edit"])
    p.add_argument("ids", nargs="*", metavar="PAIR_ID", help="pair ids (unique prefixes are enough)")
    p.add_argument("--status", default="pending", help="list: pending|approved|rejected|edited|failed|all")
    p.add_argument("--kind", choices=SDG_KINDS, help="only pairs of this kind")
    p.add_argument("--split", choices=["train", "validation", "probe"], help="only pairs of this split")
    p.add_argument("--limit", type=int, help="list: at most N pairs")
    p.add_argument("--sources", action="store_true", help="list: show each pair's source passage")
    p.add_argument("--all", action="store_true", help="approve: every pending pair that passed every filter "
                   "(narrowed by --kind/--split); needs --reason")
    p.add_argument("--reason", help="why (required to reject and for bulk approval)")
    p.add_argument("--question", help="edit: the corrected question")
    p.add_argument("--answer", help="edit: the corrected answer")
    p.add_argument("--reviewer", help="who reviews (default: the OS user)")
    p.set_defaults(func=cmd_review)

    p = ssub.add_parser("dataset", parents=[common], help="make a versioned dataset from the approved pairs")
    p.add_argument("--unreviewed", action="store_true", help="take every passing pair not rejected (recorded)")
    p.add_argument("--groups", help="access groups whose documents the pairs may come from")
    p.set_defaults(func=cmd_dataset)

    p = ssub.add_parser("export", parents=[common], help="write a dataset in a training format (JSONL)")
    p.add_argument("dataset", metavar="DATASET_ID")
    p.add_argument("--format", default="prompt-completion", choices=EXPORT_FORMATS)
    p.add_argument("--out", metavar="DIR", help="default: workspace/datasets/ID/export/FORMAT")
    p.set_defaults(func=cmd_export)

    p = ssub.add_parser("probe", parents=[common], help="the abstention probe from held-out documents")
    p.add_argument("--groups", help="access groups whose documents the probe may come from")
    p.add_argument("--limit", type=int, help="at most N probe questions")
    p.set_defaults(func=cmd_probe)
