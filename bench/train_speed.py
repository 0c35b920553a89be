"""Adaptation and serving speed, each figure beside a baseline measured in the same run:

1. CPU LoRA training tokens/s: TRL's SFTTrainer (our recipe's settings) in fp32 and, where the CPU has it natively,
   bf16 autocast, with TRL's own CPU LM head (every position scored) and the recipe's (the answer's positions only,
   training/cpu.py), against a plain transformers + peft loop (AdamW, completion-only labels) on the same examples
   (baseline: the plain fp32 loop);
2. generation, llama.cpp (the GGUF) vs transformers generate (the dense copy), same RAG prompts, greedy: prompt
   processing and decoding tokens/s apart (the time to the first token is the prompt's; target >= 3x decoding);
3. with --adapter NAME (exported with --merge): base + GGUF LoRA vs the merged quantized file;
4. the server: chat completions over HTTP vs calling the generator directly, alternating which goes first, and the
   server's own cost apart from generation (target >= 0.95x).

    .venv/bin/python bench/train_speed.py --workspace WS --dataset ID [--model smollm2-135m-instruct] [--steps 6]
        [--adapter NAME] [--no-training] [--server-rounds 3]
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import appliance  # noqa: F401
from appliance.llm import load_generator
from appliance.llm.base import SamplingParams
from appliance.training.common import native_bf16
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


def hf_generate_rate(base: Path, prompts: list[list[int]], n: int) -> tuple[float, float]:
    """(prompt tokens/s, decode tokens/s) of transformers generate: each prompt run for 1 token, then for n."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()

    def run(x, k: int) -> tuple[int, float]:  # noqa: ANN001
        t0 = time.perf_counter()
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k, min_new_tokens=k,
                             do_sample=False)
        return out.shape[1] - x.shape[1], time.perf_counter() - t0

    p_tokens = p_s = d_tokens = d_s = 0.0
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            _, first = run(x, 1)            # the first token's time is the prompt's
            made, last = run(x, n)
            p_tokens, p_s, d_tokens, d_s = p_tokens + len(ids), p_s + first, d_tokens + made - 1, d_s + last - first
    return p_tokens / p_s, d_tokens / d_s


def llama_rate(gen, prompts: list[str], n: int) -> tuple[float, float]:  # noqa: ANN001
    """From llama.cpp's own counters (a greedy answer may end before n tokens, so two timed runs would not do)."""
    import llama_cpp

    ctx = gen.llm._ctx.ctx
    p_tokens = p_ms = d_tokens = d_ms = 0.0
    for p in prompts:
        gen.llm.reset()                                 # no prefix cache: the whole prompt is processed
        llama_cpp.llama_perf_context_reset(ctx)
        gen.generate(p, SamplingParams(0.0, 1.0, n, 0))
        perf = llama_cpp.llama_perf_context(ctx)
        p_tokens, p_ms = p_tokens + perf.n_p_eval, p_ms + perf.t_p_eval_ms
        d_tokens, d_ms = d_tokens + perf.n_eval, d_ms + perf.t_eval_ms
    return p_tokens / p_ms * 1000, d_tokens / d_ms * 1000


def server_ratio(ws, gen, prompts: list[list[dict]], n: int,  # noqa: ANN001
                 rounds: int) -> list[tuple[float, float, float, int, int]]:
    """(direct seconds, HTTP seconds, seconds the served generation itself took, answer tokens direct, over HTTP)
    per request: the same generator, prompts and greedy settings, direct and over HTTP alternating which goes
    first, after one warm-up of each (the token counts show that both ways timed the same answers)."""
    import httpx
    import uvicorn

    from appliance.serve.app import create_app
    from appliance.serve.server import service

    params = SamplingParams(0.0, 1.0, n, 0)
    inner: list[float] = []
    generate = gen.generate

    def timed(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        g = generate(*a, **k)
        inner.append(time.perf_counter() - t0)
        return g

    def direct(m: list[dict]) -> tuple[float, int]:
        prompt, stop = gen.render_messages(m)
        gen.llm.reset()                                   # no prefix cache either way
        t0 = time.perf_counter()
        g = generate(prompt, params, stop)
        return time.perf_counter() - t0, g.completion_tokens

    def served(c, m: list[dict]) -> tuple[float, int]:  # noqa: ANN001
        gen.llm.reset()
        t0 = time.perf_counter()
        r = c.post("http://127.0.0.1:8765/v1/chat/completions",
                   json={"model": gen.identity.model, "messages": m, "max_tokens": n, "temperature": 0})
        r.raise_for_status()
        return time.perf_counter() - t0, r.json()["usage"]["completion_tokens"]

    rows = []
    with ws.run("bench-serve", "bench/train_speed.py") as run:
        gen.generate = timed                              # the server's calls are timed; direct() calls the original
        svc = service(ws, run, generator=gen)
        srv = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=8765, log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)
        with httpx.Client(timeout=600) as c:
            warm = direct(prompts[0]), served(c, prompts[0])
            print(f"warm-up, not counted: direct {warm[0][0]:.2f} s, HTTP {warm[1][0]:.2f} s")
            for i in range(rounds * len(prompts)):
                m = prompts[i % len(prompts)]
                if (i + i // len(prompts)) % 2:
                    s, d = served(c, m), direct(m)
                else:
                    d, s = direct(m), served(c, m)
                rows.append((d[0], s[0], inner[-1], d[1], s[1]))
        srv.should_exit = True
        del gen.generate
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with a dataset")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6, help="training examples per measurement")
    ap.add_argument("--adapter", help="an adapter exported with --merge: adapter vs merged serving speed")
    ap.add_argument("--no-training", action="store_true", help="generation and serving figures only")
    ap.add_argument("--server-rounds", type=int, default=3, help="rounds over the 4 prompts, direct and over HTTP")
    args = ap.parse_args()
    ws = open_workspace(args.workspace)
    entry, gguf = ws.models.verified_path(args.model)
    base = dense_base(ws, entry, gguf)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in load_train_data(ws, args.dataset, chat=True).train]
    out = Path(ws.root / "cache" / "bench-train")
    print(f"model {entry.name}, {args.steps} examples per measurement")
    if not args.no_training:
        base_rate = plain_rate(base, rows, args.steps, bf16=False)
        print(f"{'training':<40} {'tokens/s':>9} {'x plain fp32 loop':>18}")
        print(f"{'plain transformers+peft loop fp32':<40} {base_rate:>9.1f} {1.0:>18.2f}")
        # bf16 autocast only where the CPU has it natively (where the recipe uses it): emulated, it takes many times
        # longer than fp32 and measures nothing a user runs
        bf16 = native_bf16()
        rates = [("plain loop bf16 autocast", plain_rate(base, rows, args.steps, bf16=True))] if bf16 else []
        rates += [("TRL fp32, TRL's CPU LM head", trl_rate(base, rows, args.steps, False, out))]
        rates += [("TRL bf16, TRL's CPU LM head", trl_rate(base, rows, args.steps, True, out))] if bf16 else []
        score_answer_tokens_only()   # from here on as the recipe trains (it cannot be undone in this process)
        rates += [(f"TRL fp32, answer positions only{'' if bf16 else ' (recipe)'}",
                   trl_rate(base, rows, args.steps, False, out))]
        rates += [("TRL bf16, answer positions (recipe)", trl_rate(base, rows, args.steps, True, out))] if bf16 else []
        if not bf16:
            print("(no bf16 rows: this CPU has no native bf16, so the recipe trains in fp32 here)")
        for label, rate in rates:
            print(f"{label:<40} {rate:>9.1f} {rate / base_rate:>18.2f}")

    gen = load_generator(ws, entry.name)
    prompts = [gen.render_messages(r["prompt"])[0] for r in rows[:4]]
    n = 32
    hf = hf_generate_rate(base, [gen.tokens(p) for p in prompts], n)
    ll = llama_rate(gen, prompts, n)
    print(f"\ngeneration ({len(prompts)} RAG prompts, {n} tokens, greedy)")
    print(f"{'':<40} {'prompt tok/s':>12} {'decode tok/s':>12} {'decode x transformers':>22}")
    print(f"{'transformers generate (fp32)':<40} {hf[0]:>12.1f} {hf[1]:>12.1f} {1.0:>22.2f}")
    print(f"{'llama.cpp (GGUF)':<40} {ll[0]:>12.1f} {ll[1]:>12.1f} {ll[1] / hf[1]:>22.2f}   (target >= 3x)")
    if args.adapter:
        from appliance.export.job import merged_name

        lora = load_generator(ws, adapter=args.adapter)
        merged_model = next(m.name for m in ws.models.registered() if m.name.startswith(merged_name(args.adapter, "")))
        merged = load_generator(ws, merged_model)
        a, m = llama_rate(lora, prompts, n), llama_rate(merged, prompts, n)
        print(f"{'base + GGUF LoRA':<40} {a[0]:>12.1f} {a[1]:>12.1f} {a[1] / hf[1]:>22.2f}")
        print(f"{'merged: ' + merged_model:<40} {m[0]:>12.1f} {m[1]:>12.1f} {m[1] / hf[1]:>22.2f}")
    pairs = server_ratio(ws, gen, [r["prompt"] for r in rows[:4]], n, args.server_rounds)
    d, s, g, d_tok, s_tok = (sum(x[j] for x in pairs) for j in range(5))
    print(f"\nserver ({len(pairs)} chat requests each way, {n} tokens, greedy, alternating which goes first)")
    print(f"{'direct (the generator)':<40} {d:>8.2f} s, {d_tok} answer tokens")
    print(f"{'over HTTP (appliance serve)':<40} {s:>8.2f} s, {s_tok} answer tokens; of which generation {g:.2f} s, "
          f"the rest {(s - g) / len(pairs) * 1000:.0f} ms per request")
    ratios = sorted(x[0] / x[1] for x in pairs)
    print(f"direct / HTTP time: {d / s:.3f}x overall, per request median {ratios[len(ratios) // 2]:.3f}x "
          f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}; target >= 0.95x)")

if __name__ == "__main__":
    main()
