"""GPU recipe: QLoRA with Unsloth (4-bit base, LoRA in bf16), trained by the same TRL SFTTrainer settings as the CPU
recipe. Unsloth is imported only here, and only when CUDA is present; it comes from the CUDA set
(bundles/lock-gpu.txt, with TRL 1.15 and datasets 4.8 as Unsloth 2026.10.9 requires).

    appliance train --dataset ID --backend gpu

Top to bottom: Unsloth's loader on the dense base (4-bit) -> its LoRA on every linear projection (its own gradient
checkpointing) -> SFTTrainer with the shared settings -> train, resuming from the last checkpoint -> save the adapter.
"""
from __future__ import annotations

from appliance.errors import UsageError
from appliance.training.common import (Job, Result, finish, last_checkpoint, quiet, rows_of, sft_config,
                                       trainer_callbacks)
from appliance.training.cpu import longest

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train(job: Job) -> Result:
    try:
        from unsloth import FastLanguageModel
    except ImportError as e:
        raise UsageError(f"the gpu backend needs Unsloth from the CUDA set (./install.sh --stage-gpu stages it; the "
                         f"install takes it where nvidia-smi lists a GPU): {e}") from None
    from datasets import Dataset, disable_progress_bars
    from trl import SFTTrainer

    cfg, data = job.cfg, job.data
    evaluate = data.validation[: cfg.eval_examples or None]
    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(job.base), max_seq_length=8192,
                                                         load_in_4bit=True, dtype=None, local_files_only=True)
    max_length = longest(tokenizer, data.train + evaluate)
    model = FastLanguageModel.get_peft_model(
        model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        target_modules=LINEAR if cfg.target_modules == "all-linear" else cfg.target_modules.split(","),
        use_gradient_checkpointing="unsloth", random_state=cfg.seed)
    callbacks = trainer_callbacks(job)
    disable_progress_bars()
    trainer = SFTTrainer(
        model=model, processing_class=tokenizer, args=sft_config(job, max_length),
        train_dataset=Dataset.from_list(rows_of(data.train)), eval_dataset=Dataset.from_list(rows_of(evaluate)),
        callbacks=callbacks,
    )
    quiet(trainer)
    trainer.train(resume_from_checkpoint=last_checkpoint(job.checkpoints))
    return finish(trainer, job, callbacks, max_length)
