"""Adaptation (`appliance train`): a LoRA adapter trained on a dataset version against the dense copy of a bundled
GGUF, by one recipe per backend (cpu.py: transformers + peft + TRL; gpu.py: Unsloth QLoRA), then registered in the
workspace with its lineage (base sha256, dataset id, settings, losses, wall time, tokens/s).

A run is an audit run of kind `train`: its start event says what was asked (dataset, model, backend, precision,
what the contamination guard found and whether it was forced), `train_steps` holds the loss curve, and
`train_checkpoint` events mark checkpoints; a killed run goes on from its last checkpoint with
`appliance train --resume RUN`.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from appliance.choices import TRAIN_BACKENDS
from appliance.errors import UsageError
from appliance.models import check_name
from appliance.progress import Progress
from appliance.resume import find_resumable, process_event
from appliance.training.common import STAGE, Job, choose_precision, schedule
from appliance.training.data import load_train_data
from appliance.training.dense import dense_base
from appliance.workspace import Workspace

RESUME_SECTIONS = ("train", "models")
# measured: LoRA r16, Qwen-0.5B (494M), a devset dataset of RAG examples (~640 tokens), bf16, 2 quiet threads, the LM
# head on the answer's positions only: 284,832 tokens in 3,477 s with 3 validations = 82 tokens/s (48 before)
PARAM_TOKENS_PER_SECOND = 4.0e10


def resolve_backend(setting: str) -> str:
    """cpu or gpu for `train.backend` / --backend (auto: gpu where CUDA is present)."""
    if setting not in TRAIN_BACKENDS:
        raise UsageError(f"backend {setting!r}: choose one of {', '.join(TRAIN_BACKENDS)}")
    import torch

    from appliance.training.cpu import loss_runs_on_cpu

    cuda = torch.cuda.is_available()
    if setting == "gpu" and not cuda:
        raise UsageError("--backend gpu: no CUDA device here (torch.cuda.is_available() is false); use cpu")
    chosen = setting if setting != "auto" else ("gpu" if cuda else "cpu")
    if chosen == "cpu" and not loss_runs_on_cpu():
        raise UsageError("this install has the CUDA set, whose TRL (1.15, as Unsloth requires) computes the training "
                         "loss with a Triton kernel that needs a GPU: train with --backend gpu on a CUDA device, or "
                         "install the CPU set (APPLIANCE_WHEELS=cpu ./install.sh --offline)")
    return chosen


def measured_rate(ws: Workspace, model_sha256: str, precision: str, threads: int) -> tuple[float, str] | None:
    """Tokens/s (validations included) of this workspace's latest finished cpu training of the same base, precision
    and threads on this host, with the run it comes from; None when there is none."""
    import socket

    from appliance.audit import AuditStore

    with AuditStore(ws.audit_path) as store:
        found = store.con.execute(
            "SELECT s.run_id, CAST(json_extract(s.payload_json, '$.tokens_per_second') AS DOUBLE) AS rate "
            "FROM events s JOIN events t ON t.run_id = s.run_id AND t.kind = 'train_start' "
            "WHERE s.kind = 'train_summary' AND s.run_id IN (SELECT run_id FROM runs WHERE host = ?) "
            "AND json_extract_string(t.payload_json, '$.model_sha256') = ? "
            "AND json_extract_string(t.payload_json, '$.precision') = ? "
            "AND CAST(json_extract(t.payload_json, '$.threads') AS INTEGER) = ? "
            "AND json_extract_string(s.payload_json, '$.backend') = 'cpu' AND rate > 0 "
            "ORDER BY s.created_at DESC, s.seq DESC LIMIT 1",
            [socket.gethostname(), model_sha256, precision, threads]).fetchone()
    return (found[1], f"as run {found[0][:8]} measured here") if found else None


def estimate(base_bytes: int, tokens: int, steps: dict[str, int], precision: str, threads: int, backend: str,
             n_train: int, measured: tuple[float, str] | None = None) -> dict[str, Any]:
    """Seconds to expect on this CPU, from the tokens to train on and a rate: the one `measured` here by an earlier
    run of the same base, precision and threads, else the rate measured on a bf16 machine scaled by parameters,
    threads and precision (fp32 x 0.5 there; on an AVX2 machine with no bf16, fp32 ran at 58 tokens/s where this
    assumption says 32). A GPU is not estimated."""
    if measured:
        rate, basis = measured
    else:
        params = base_bytes / 4
        rate = PARAM_TOKENS_PER_SECOND / params * (threads / 2) * (1.0 if precision == "bf16" else 0.5)
        basis = "assumed from a measurement on another CPU"
    epochs = steps["max_steps"] / max(steps["steps_per_epoch"], 1)
    seconds = tokens * epochs / rate if backend == "cpu" else None
    text = (f"{n_train} examples, {tokens} tokens per epoch, at most {steps['max_steps']} updates "
            f"({steps['steps_per_epoch']} per epoch, validation every {steps['eval_steps']})")
    if seconds is not None:
        text += (f"; about {seconds / 60:.0f} min at most on {threads} threads ({precision}, ~{rate:.0f} tokens/s, "
                 f"{basis})")
    return {"tokens_per_epoch": tokens, "tokens_per_second": round(rate, 1), "seconds": seconds,
            "basis": basis if backend == "cpu" else None, "text": text}


def train_adapter(ws: Workspace, dataset_id: str | None = None, model: str | None = None,
                  backend: str | None = None, force: bool = False, resume: str | None = None, name: str | None = None,
                  progress: Progress | None = None, command: str = "") -> dict[str, Any]:
    """Train (or resume) a LoRA adapter and register it; return the run's summary."""
    progress = progress or Progress()
    r = find_resumable(ws, resume, "train", "train_start", RESUME_SECTIONS, "train_checkpoint") if resume else None
    if r:
        dataset_id, model, backend, force, name = (r.start["dataset_id"], r.start["model"], r.start["backend"],
                                                   r.start["forced"], r.start["name"])
    if not dataset_id:
        raise UsageError("give --dataset ID (`appliance sdg dataset` makes one)")
    if name is not None:
        check_name(name)   # before the hours of training, not at registration after them
    cfg = ws.config.train
    entry, gguf = ws.models.verified_path(model or ws.config.models.generator)
    if entry.role in ("embedder", "adapter"):
        raise UsageError(f"model {entry.name!r} is a {entry.role}; train an adapter on a generator")
    if r and entry.sha256 != r.start["model_sha256"]:
        raise UsageError(f"model {entry.name} is not the file run {r.run_id} started with")
    backend = resolve_backend(backend or cfg.backend)
    if backend == "gpu":
        import unsloth  # noqa: F401 - Unsloth patches transformers and TRL: it must be imported before them
    data = load_train_data(ws, dataset_id, chat=entry.chat_template)
    if data.contaminated and not force:
        shown = "; ".join(f"{c['id']}: {c['detail']}" for c in data.contaminated[:3])
        raise UsageError(f"dataset {data.dataset_id}: {len(data.contaminated)} training examples are too close to "
                         f"golden questions this workspace evaluates with ({shown}); make the dataset again, or "
                         f"--force (recorded) to train on it anyway")
    precision = choose_precision(cfg.precision, backend == "gpu")
    threads = ws.config.llm.n_threads or os.cpu_count() or 1
    base = dense_base(ws, entry, gguf, progress)
    plan = schedule(cfg, len(data.train))
    from transformers import AutoTokenizer

    from appliance.training.cpu import longest

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokens = sum(longest(tokenizer, [row]) for row in data.train)
    base_bytes = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    guess = estimate(base_bytes, tokens, plan, precision, threads, backend, len(data.train),
                     measured_rate(ws, entry.sha256, precision, threads) if backend == "cpu" else None)
    progress.note(guess["text"], STAGE)
    if not data.card.get("reviewed_only", False):
        progress.note(f"dataset {data.dataset_id} includes pairs nobody reviewed (recorded with the adapter)", STAGE)
    with ws.resumed_run(r.run_id) if r else ws.run("train", command) as run:
        checkpoints = ws.root / "training" / run.run_id
        checkpoints.mkdir(parents=True, exist_ok=True)
        if r:
            run.event("run_resumed", **process_event(command))
        else:
            run.event("train_start", **process_event(
                command, dataset_id=data.dataset_id, model=entry.name, model_sha256=entry.sha256, backend=backend,
                precision=precision, threads=threads, name=name, forced=force,
                contaminated=[c["id"] for c in data.contaminated], reviewed_only=bool(data.card.get("reviewed_only")),
                n_train=len(data.train), n_validation=len(data.validation), schedule=plan, dense_base=str(base)))
        run.event("train_estimate", **{k: v for k, v in guess.items() if k != "text"})
        run.flush()
        progress.note(f"run {run.run_id}: if it is stopped, `appliance train --resume {run.run_id}` goes on from "
                      f"the last checkpoint (every {plan['eval_steps']} updates)", STAGE)
        recorded = {(row["step"], row["split"]) for row in run.store.rows("train_steps", run.run_id)}
        run.store.close()   # hold the file only while writing: auditors can read the store during a long run
        adapter_out = checkpoints / "adapter"
        job = Job(cfg=cfg, base=base, data=data, checkpoints=checkpoints, adapter_out=adapter_out,
                  precision=precision, threads=threads, run=run, progress=progress, recorded=recorded)
        progress.start(STAGE, plan["max_steps"], "steps", done=max((s for s, _ in recorded), default=0))
        t0 = time.perf_counter()
        if backend == "gpu":
            from appliance.training import gpu as recipe
        else:
            from appliance.training import cpu as recipe
        result = recipe.train(job)
        lineage = {"base": entry.name, "base_sha256": entry.sha256, "dataset_id": data.dataset_id,
                   "dataset_reviewed_only": bool(data.card.get("reviewed_only")), "forced": force,
                   "contaminated": len(data.contaminated), "backend": backend, "precision": precision,
                   "config": asdict(cfg), "run_id": run.run_id, "result": asdict(result),
                   "chat_template": entry.chat_template}
        adapter = ws.models.register(name or f"{entry.name}-lora-{run.run_id[:8]}", "adapter", adapter_out, lineage,
                                     licence=entry.licence, description=f"LoRA r{cfg.lora_r} on {entry.name}, "
                                     f"dataset {data.dataset_id}", chat_template=entry.chat_template)
        run.event("model_registered", name=adapter.name, role=adapter.role, sha256=adapter.sha256, lineage=lineage)
        summary = asdict(result) | {"adapter": adapter.name, "adapter_sha256": adapter.sha256,
                                    "dataset_id": data.dataset_id, "model": entry.name, "backend": backend,
                                    "precision": precision, "process_seconds": round(time.perf_counter() - t0, 1),
                                    "estimated_seconds": guess["seconds"]}
        run.event("train_summary", **summary)
        summary["run_id"] = run.run_id
    return summary
