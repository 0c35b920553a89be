"""Adaptation and serving speed, each figure beside a baseline measured in the same run:

1. CPU LoRA training tokens/s: TRL's SFTTrainer (our recipe's settings) in bf16 autocast and fp32, with TRL's own CPU
   LM head (every position scored) and the recipe's (the answer's positions only, training/cpu.py), against a plain
   transformers + peft loop (AdamW, completion-only labels) on the same examples (baseline: the plain fp32 loop);
2. generation tokens/s, llama.cpp (the GGUF) vs transformers generate (the dense copy), same prompts, greedy (target
   >= 3x);
3. with --adapter NAME (exported with --merge): base + GGUF LoRA vs the merged quantized file;
4. the server: chat completions over HTTP vs calling the generator directly (target >= 0.95x).

    .venv/bin/python bench/train_speed.py --workspace WS --dataset ID [--model smollm2-135m-instruct] [--steps 6]
        [--adapter NAME]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import appliance  # noqa: F401
from appliance.llm import load_generator
from appliance.llm.base import SamplingParams
from appliance.training.cpu import score_answer_tokens_only
from appliance.training.data import load_train_data
from appliance.training.dense import dense_base
from appliance.workspace import open_workspace


def trl_rate(base: Path, rows: list[dict], steps: int, bf16: bool, out: Path) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    t = SFTTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(rows[:steps]),
                   peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
                   args=SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=1,
                                  learning_rate=2e-4, max_length=None, completion_only_loss=True, bf16=bf16,
                                  use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                                  disable_tqdm=True, gradient_checkpointing=False))
    t0 = time.perf_counter()
    t.train()
    seconds = time.perf_counter() - t0
    tokens = max(h.get("num_tokens", 0) for h in t.state.log_history)
    return tokens / seconds


def plain_rate(base: Path, rows: list[dict], steps: int, bf16: bool) -> float:
    """A hand loop over the same examples: chat template, completion-only labels, AdamW."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    tokens, t0 = 0, time.perf_counter()
    for r in rows[:steps]:
        prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        ids = tok(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        labels = ids.clone()
        labels[:, : len(tok(prompt, add_special_tokens=False)["input_ids"])] = -100
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += ids.shape[1]
    return tokens / (time.perf_counter() - t0)


def hf_generate_rate(base: Path, prompts: list[list[int]], n: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    made, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False)
            made += out.shape[1] - len(ids)
    return made / (time.perf_counter() - t0)


def llama_rate(gen, prompts: list[str], n: int) -> float:  # noqa: ANN001
    params = SamplingParams(0.0, 1.0, n, 0)
    made, seconds = 0, 0.0
    for p in prompts:
        gen.llm.reset()
        g = gen.generate(p, params)
        made += g.completion_tokens
        seconds += g.latency_ms / 1000
    return made / seconds


def server_ratio(ws, gen, prompts: list[list[dict]], n: int) -> tuple[float, float]:  # noqa: ANN001
    """Seconds per request direct and over HTTP (same generator, same prompts, greedy)."""
    import httpx
    import uvicorn

    from appliance.serve.app import create_app
    from appliance.serve.server import service

    params = SamplingParams(0.0, 1.0, n, 0)
    direct = []
    for m in prompts:
        gen.llm.reset()
        t0 = time.perf_counter()
        gen.generate(gen.render_messages(m)[0], params, gen.render_messages(m)[1])
        direct.append(time.perf_counter() - t0)
    with ws.run("bench-serve", "bench/train_speed.py") as run:
        svc = service(ws, run, generator=gen)
        srv = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=8765, log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)
        served = []
        with httpx.Client(timeout=600) as c:
            for m in prompts:
                gen.llm.reset()
                t0 = time.perf_counter()
                c.post("http://127.0.0.1:8765/v1/chat/completions",
                       json={"model": gen.identity.model, "messages": m, "max_tokens": n, "temperature": 0}
                       ).raise_for_status()
                served.append(time.perf_counter() - t0)
        srv.should_exit = True
    return statistics.mean(direct), statistics.mean(served)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with a dataset")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6, help="training examples per measurement")
    ap.add_argument("--adapter", help="an adapter exported with --merge: adapter vs merged serving speed")
    args = ap.parse_args()
    ws = open_workspace(args.workspace)
    entry, gguf = ws.models.verified_path(args.model)
    base = dense_base(ws, entry, gguf)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in load_train_data(ws, args.dataset, chat=True).train]
    out = Path(ws.root / "cache" / "bench-train")
    print(f"model {entry.name}, {args.steps} examples per measurement")
    base_rate = plain_rate(base, rows, args.steps, bf16=False)
    print(f"{'training':<34} {'tokens/s':>9} {'x plain fp32 loop':>18}")
    print(f"{'plain transformers+peft loop fp32':<34} {base_rate:>9.1f} {1.0:>18.2f}")
    rates = [("plain loop bf16 autocast", plain_rate(base, rows, args.steps, bf16=True)),
             ("TRL fp32, TRL's CPU LM head", trl_rate(base, rows, args.steps, False, out)),
             ("TRL bf16, TRL's CPU LM head", trl_rate(base, rows, args.steps, True, out))]
    score_answer_tokens_only()   # from here on as the recipe trains (it cannot be undone in this process)
    rates += [("TRL fp32, answer positions only", trl_rate(base, rows, args.steps, False, out)),
              ("TRL bf16, answer positions (recipe)", trl_rate(base, rows, args.steps, True, out))]
    for label, rate in rates:
        print(f"{label:<34} {rate:>9.1f} {rate / base_rate:>18.2f}")

    gen = load_generator(ws, entry.name)
    prompts = [gen.render_messages(r["prompt"])[0] for r in rows[:4]]
    n = 32
    hf = hf_generate_rate(base, [gen.tokens(p) for p in prompts], n)
    ll = llama_rate(gen, prompts, n)
    print(f"\ngeneration ({n} tokens, greedy)   tokens/s  x transformers")
    print(f"{'transformers generate (fp32)':<34} {hf:>9.1f} {1.0:>14.2f}")
    print(f"{'llama.cpp (GGUF)':<34} {ll:>9.1f} {ll / hf:>14.2f}   (target >= 3x)")
    if args.adapter:
        from appliance.export.job import merged_name

        lora = load_generator(ws, adapter=args.adapter)
        merged = load_generator(ws, next(m.name for m in ws.models.registered()
                                        if m.name.startswith(merged_name(args.adapter, ""))))
        a, m = llama_rate(lora, prompts, n), llama_rate(merged, prompts, n)
        print(f"{'base + GGUF LoRA':<34} {a:>9.1f} {a / ll:>14.2f}   (x base alone)")
        print(f"{'merged + quantized':<34} {m:>9.1f} {m / ll:>14.2f}")
    direct, served = server_ratio(ws, gen, [r["prompt"] for r in rows[:4]], n)
    print(f"\nserver: {served:.2f} s per request over HTTP vs {direct:.2f} s direct: {direct / served:.3f}x "
          f"(target >= 0.95x)")


if __name__ == "__main__":
    main()
