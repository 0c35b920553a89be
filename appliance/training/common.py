"""What both training recipes share, so that every backend trains the same way: the job they are handed, the TRL
settings built from [train] (the same learning rate, schedule, LoRA shape and stopping rule everywhere), the
precision chosen for this CPU, and the callback that writes the loss curve into the audit store and reports
progress."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import TrainConfig
from appliance.progress import Progress
from appliance.training.data import TrainData

STAGE = "train"


@dataclass
class Job:
    """Everything a recipe needs: settings, the dense base, the data, where checkpoints go and the adapter is saved."""

    cfg: TrainConfig
    base: Path                      # the dense copy of the GGUF (training/dense.py)
    data: TrainData
    checkpoints: Path               # the run's checkpoint folder (resume continues from its last checkpoint)
    adapter_out: Path               # where the finished adapter is saved (then registered)
    precision: str                  # bf16 | fp32
    threads: int
    run: Any                        # the audit run the loss curve is written to
    progress: Progress
    recorded: set[tuple[int, str]] = field(default_factory=set)   # (step, split) rows already in the audit store


@dataclass
class Result:
    """What a recipe reports back (recorded with the adapter)."""

    steps: int
    epochs: float
    max_length: int
    train_loss: float | None
    eval_loss: float | None
    best_step: int | None
    stopped_early: bool
    seconds: float
    tokens: int
    tokens_per_second: float
    trainable_parameters: int


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 autocast is then about twice as fast as
    fp32 for LoRA (measured in bench/train_speed.py); elsewhere bf16 is emulated and slower, so fp32 is used."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(setting: str, gpu: bool) -> str:
    """bf16 or fp32 for `train.precision` (auto: bf16 on a GPU or a CPU with native bf16)."""
    if setting != "auto":
        return setting
    if gpu:
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16() else "fp32"


def schedule(cfg: TrainConfig, n_train: int) -> dict[str, int]:
    """Optimizer updates per epoch, the evaluation (and checkpoint) interval, and the step limit."""
    per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accumulation))
    total = per_epoch * cfg.max_epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    every = max(1, min(total, math.ceil(per_epoch / cfg.evals_per_epoch)))
    return {"steps_per_epoch": per_epoch, "max_steps": total, "eval_steps": every}


def sft_config(job: Job, max_length: int, **backend: Any):
    """TRL's settings for a job: loss on the completion only, nothing truncated (max_length is the longest example),
    validation loss and a checkpoint every `eval_steps`, the best checkpoint kept and loaded at the end."""
    from trl import SFTConfig

    cfg = job.cfg
    plan = schedule(cfg, len(job.data.train))
    return SFTConfig(
        output_dir=str(job.checkpoints), seed=cfg.seed, data_seed=cfg.seed,
        learning_rate=cfg.learning_rate, lr_scheduler_type="linear", warmup_steps=cfg.warmup_ratio,  # a float below 1: a share
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=1,
        gradient_accumulation_steps=cfg.grad_accumulation, num_train_epochs=cfg.max_epochs,
        max_steps=plan["max_steps"], max_length=max_length, completion_only_loss=True, packing=False,
        eval_strategy="steps", eval_steps=plan["eval_steps"], save_strategy="steps", save_steps=plan["eval_steps"],
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=1, logging_first_step=True, report_to="none", disable_tqdm=True,
        restore_callback_states_from_checkpoint=True,   # early stopping's patience count survives a resume
        gradient_checkpointing=cfg.gradient_checkpointing, bf16=job.precision == "bf16", **backend,
    )


def trainer_callbacks(job: Job) -> list:
    """The audit/progress callback and early stopping on validation loss (`train.patience` evaluations)."""
    from transformers import EarlyStoppingCallback

    return [audit_callback(job), EarlyStoppingCallback(early_stopping_patience=job.cfg.patience)]


def quiet(trainer: Any) -> None:
    """Our progress events replace transformers' printed log dicts (datasets' bars are switched off by the recipe
    before the trainer tokenizes)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)


def rows_of(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two columns TRL reads (the dataset's other fields stay in the card and the audit store)."""
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in data]


def last_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written whole, for a resume. transformers writes a checkpoint's
    trainer_state.json after its weights, optimizer and RNG state, and its own get_last_checkpoint looks only at
    folder names, so a kill -9 during a save would otherwise resume from a half-written folder."""
    done = [d for d in folder.glob("checkpoint-*") if d.name.rsplit("-", 1)[-1].isdigit()
            and (d / "trainer_state.json").is_file()]
    return str(max(done, key=lambda d: int(d.name.rsplit("-", 1)[-1]))) if done else None


def audit_callback(job: Job) -> Any:
    """A transformers TrainerCallback that writes every logged training and validation loss into `train_steps` (a
    step already recorded before a kill is not written twice), marks checkpoints, reports progress and stops at a
    cancel (the run stays resumable). Built here so that importing this module does not import transformers."""
    from transformers import TrainerCallback

    class AuditCallback(TrainerCallback):
        def __init__(self, job: Job) -> None:
            self.job = job
            self.t0 = time.perf_counter()
            self.tokens_start = 0
            self.tokens = 0
            self.last_loss: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            seen = [h["num_tokens"] for h in state.log_history if "num_tokens" in h]   # restored from a checkpoint
            self.tokens_start = self.tokens = int(seen[-1]) if seen else 0

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
            logs = logs or {}
            for split, key in (("train", "loss"), ("validation", "eval_loss")):
                if key not in logs:
                    continue
                tokens = int(logs.get("num_tokens", 0)) or None
                if split == "train":
                    self.last_loss = float(logs[key])
                    self.tokens = tokens or self.tokens
                if (state.global_step, split) in self.job.recorded:
                    continue
                self.job.recorded.add((state.global_step, split))
                self.job.run.append("train_steps", step=state.global_step, epoch=float(state.epoch or 0), split=split,
                                    loss=float(logs[key]), learning_rate=logs.get("learning_rate"), tokens=tokens,
                                    token_accuracy=logs.get("mean_token_accuracy" if split == "train"
                                                            else "eval_mean_token_accuracy"),
                                    seconds=round(time.perf_counter() - self.t0, 3))
                self.job.run.flush()
                if split == "validation":
                    self.job.progress.note(f"step {state.global_step}: validation loss {logs[key]:.4f}", STAGE)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            loss = f"last logged loss {self.last_loss:.4f}" if self.last_loss is not None else ""
            self.job.progress.advance(STAGE, state.global_step, state.max_steps, "steps", loss)

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            self.job.run.event("train_checkpoint", step=state.global_step,
                               path=str(Path(args.output_dir) / f"checkpoint-{state.global_step}"),
                               best_metric=state.best_metric)
            self.job.run.flush()

        @property
        def process_tokens(self) -> int:
            """Tokens trained on by this process (a resumed run counts from where it resumed)."""
            return self.tokens - self.tokens_start

    return AuditCallback(job)


def finish(trainer: Any, job: Job, callbacks: list, max_length: int) -> Result:
    """Save the (best) adapter and summarise the run."""
    state = trainer.state
    callback = callbacks[0]
    trainer.model.save_pretrained(str(job.adapter_out))
    seconds = time.perf_counter() - callback.t0
    evals = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    trains = [h["loss"] for h in state.log_history if "loss" in h]
    best_step = None
    if state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return Result(steps=state.global_step, epochs=round(float(state.epoch or 0), 3), max_length=max_length,
                  train_loss=trains[-1] if trains else None,
                  eval_loss=state.best_metric if state.best_metric is not None else (evals[-1] if evals else None),
                  best_step=best_step, stopped_early=state.global_step < state.max_steps,
                  seconds=round(seconds, 1), tokens=callback.process_tokens,
                  tokens_per_second=round(callback.process_tokens / seconds, 1) if seconds else 0.0,
                  trainable_parameters=trainable)
