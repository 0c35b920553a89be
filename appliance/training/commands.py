"""`appliance train`."""
from __future__ import annotations

import argparse

from appliance import cliutil
from appliance.choices import TRAIN_BACKENDS


def cmd_train(args: argparse.Namespace) -> int:
    from appliance.training.adapter import train_adapter

    ws = cliutil.workspace(args)
    with cliutil.progress(args) as progress:
        s = train_adapter(ws, args.dataset, model=args.model, backend=args.backend, force=args.force,
                          resume=args.resume, name=args.name, progress=progress, command=cliutil.command())

    def human() -> None:
        print(f"adapter {s['adapter']} (sha256 {s['adapter_sha256'][:12]}…) on {s['model']}, dataset {s['dataset_id']}")
        print(f"  {s['steps']} updates, {s['epochs']} epochs ({'stopped early: validation loss stopped improving' if s['stopped_early'] else 'all planned'}), "
              f"train loss {s['train_loss']}, best validation loss {s['eval_loss']} (step {s['best_step']})")
        print(f"  {s['backend']} {s['precision']}, {s['seconds']:.0f} s, {s['tokens']} tokens, "
              f"{s['tokens_per_second']} tokens/s; run {s['run_id']}")

    cliutil.emit(args, s, human)
    return cliutil.EXIT_OK


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a LoRA adapter on a dataset version (cpu or gpu)")
    p.add_argument("--dataset", help="dataset id (or a unique prefix) from `appliance sdg dataset`")
    p.add_argument("--model", help="base generator (default models.generator)")
    p.add_argument("--backend", choices=TRAIN_BACKENDS, help="auto (gpu where CUDA is present), cpu or gpu "
                   "(default train.backend)")
    p.add_argument("--name", help="name to register the adapter under (default MODEL-lora-RUN)")
    p.add_argument("--force", action="store_true", help="train although examples are close to golden questions "
                   "(recorded)")
    p.add_argument("--resume", metavar="RUN", help="go on with a killed training run from its last checkpoint")
    p.set_defaults(func=cmd_train)
