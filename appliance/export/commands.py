"""`appliance export gguf`."""
from __future__ import annotations

import argparse

from appliance import cliutil


def cmd_export_gguf(args: argparse.Namespace) -> int:
    from appliance.export.job import export_gguf

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        s = export_gguf(ws, args.adapter, merge=args.merge, quant=args.quant, verify=not args.no_check,
                        prompts=args.check_prompts, progress=progress, command=cliutil.command())

    def human() -> None:
        print(f"{s['adapter']} on {s['base']}: registered {', '.join(s['registered']) or 'nothing new (exported before)'}"
              f" in {s['seconds']:.0f} s; run {s['run_id']}")
        for c in s["checks"]:
            print(f"  {c['form']:<8} greedy agreement {c['agreement']:.3f} (>= {c['min_agreement']}), mean |d log-prob| "
                  f"{c['mean_abs_logprob_diff']:.4f} (<= {c['max_mean_abs_logprob_diff']}) over {c['prompts']} prompts, "
                  f"{c['tokens']} tokens: {'ok' if c['passed'] else 'FAILED'}")

    cliutil.emit(args, s, human)
    return cliutil.EXIT_OK if all(c["passed"] for c in s["checks"]) else cliutil.EXIT_PROBLEM


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[common], help="export an adapter trained here (GGUF)")
    what = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    g = what.add_parser("gguf", parents=[common], help="GGUF LoRA file; with --merge also merged + quantized")
    g.add_argument("--adapter", required=True, help="adapter name (`appliance models`)")
    g.add_argument("--merge", action="store_true", help="also merge into the base and quantize")
    g.add_argument("--quant", default="Q8_0", help="quantization of the merged model (Q8_0, Q6_K, Q5_K_M, Q4_K_M, "
                   "Q4_0, F16; default Q8_0: Q4_K_M failed the equivalence check on the devset, docs/ADAPTATION.md)")
    g.add_argument("--no-check", action="store_true", help="skip the equivalence check")
    g.add_argument("--check-prompts", type=int, default=8, help="validation prompts the check compares")
    g.set_defaults(func=cmd_export_gguf)
