"""CPU recipe: LoRA with transformers + peft, trained by TRL's SFTTrainer on the prompt-completion rows.

    appliance train --dataset ID --backend cpu [--set train.max_epochs=1]

Top to bottom: threads -> TRL's LM head scoring the answer's positions only -> tokenizer and dense base (fp32
weights; bf16 autocast where the CPU has native bf16) -> longest example (max_length, so nothing is cut) -> LoRA on
every linear projection -> SFTTrainer (loss on the completion only, validation loss every `eval_steps`, best
checkpoint kept, early stopping) -> train, resuming from the last checkpoint if there is one -> save the best
adapter.
"""
from __future__ import annotations

from appliance.errors import UsageError
from appliance.training.common import (Job, Result, finish, last_checkpoint, quiet, rows_of, sft_config,
                                       trainer_callbacks)


def longest(tokenizer, rows: list[dict]) -> int:  # noqa: ANN001 - a transformers tokenizer
    """Tokens of the longest example as TRL will tokenize it (chat template applied; EOS appended to plain text)."""
    def length(r: dict) -> int:
        if isinstance(r["prompt"], list):
            text = tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1
    return max(length(r) for r in rows)


def score_answer_tokens_only() -> None:
    """Make TRL's fused LM head score only the positions whose label counts (the answer's) on a CPU as well.

    TRL 1.16 projects through the LM head only those positions where its Triton kernel runs, but every position
    elsewhere (so that Neuron's compiler sees one tile shape). On a CPU that is the 151,936-wide head, forward and
    backward, for each of a RAG prompt's ~600 tokens whose loss is masked anyway: about 45 % of a step. The torch
    tiles a CPU runs take any number of positions, so the CPU gets the compact path too: the same loss, 1.85x the
    tokens/s on 4 devset examples (bench/train_speed.py prints both heads). Idempotent; the kernel's own choice of
    Triton or torch tiles is untouched."""
    import trl.trainer.utils as trl_utils

    chooser = trl_utils._use_triton
    if getattr(chooser, "compact_on_cpu", False):
        return

    def compact(device) -> bool:  # noqa: ANN001 - a torch.device
        return device.type == "cpu" or chooser(device)

    compact.compact_on_cpu = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact


def loss_runs_on_cpu() -> bool:
    """Whether TRL's training loss runs on a CPU in this install: TRL 1.16 (lock.txt) picks Triton or torch tiles per
    device; TRL 1.15 (the CUDA set, bundles/lock-gpu.txt) runs its Triton kernel wherever Triton is installed, and
    that kernel needs a GPU ("0 active drivers" on a CPU)."""
    import trl.trainer.utils as trl_utils

    return hasattr(trl_utils, "_use_triton") or trl_utils._ChunkedLogProbFunction is None


def train(job: Job) -> Result:
    import torch
    from datasets import Dataset, disable_progress_bars
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    torch.set_num_threads(job.threads)
    score_answer_tokens_only()
    cfg, data = job.cfg, job.data
    tokenizer = AutoTokenizer.from_pretrained(str(job.base))
    model = AutoModelForCausalLM.from_pretrained(str(job.base), dtype=torch.float32)
    evaluate = data.validation[: cfg.eval_examples or None]
    max_length = longest(tokenizer, data.train + evaluate)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise UsageError(f"the longest example of dataset {data.dataset_id} has {max_length} tokens; "
                         f"{job.base.name} reads at most {limit}: make the dataset with a smaller eval.context_max_tokens")
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")
    callbacks = trainer_callbacks(job)
    disable_progress_bars()
    trainer = SFTTrainer(
        model=model, processing_class=tokenizer, peft_config=lora,
        args=sft_config(job, max_length, use_cpu=True, dataloader_num_workers=0),
        train_dataset=Dataset.from_list(rows_of(data.train)), eval_dataset=Dataset.from_list(rows_of(evaluate)),
        callbacks=callbacks,
    )
    quiet(trainer)
    trainer.train(resume_from_checkpoint=last_checkpoint(job.checkpoints))
    return finish(trainer, job, callbacks, max_length)
