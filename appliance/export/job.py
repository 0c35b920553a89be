"""`appliance export gguf`: an adapter trained here as a GGUF LoRA file and, with --merge, merged into its base and
quantized; each form registered as a model, then checked against transformers + peft (appliance/export/check.py).
The whole export is one audit run (kind `export`) with the models it registered and the check's figures."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.errors import UsageError
from appliance.export import check
from appliance.export.gguf import (QUANTS, adapter_gguf, base_of, converter_dir, find_adapter, lineage,
                                   merged_gguf)
from appliance.progress import Progress
from appliance.training.data import dataset_folder
from appliance.training.dense import dense_base
from appliance.workspace import Workspace

STAGE = "export"


def gguf_name(adapter: str) -> str:
    """The registered name of an adapter's GGUF LoRA file."""
    return f"{adapter}-gguf"


def merged_name(adapter: str, quant: str) -> str:
    return f"{adapter}-merged-{quant.lower()}"


def export_gguf(ws: Workspace, adapter_name: str, merge: bool = False, quant: str = "Q8_0", verify: bool = True,
                prompts: int = 8, new_tokens: int = 16, progress: Progress | None = None,
                command: str = "") -> dict[str, Any]:
    """Export an adapter (and, with `merge`, the merged quantized model); return what was registered and checked."""
    progress = progress or Progress()
    quant = quant.upper()
    if quant not in QUANTS:
        raise UsageError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    adapter, adapter_dir = find_adapter(ws, adapter_name)
    base, base_gguf = base_of(ws, adapter)
    threads = ws.config.llm.n_threads or os.cpu_count() or 1
    dense = dense_base(ws, base, base_gguf, progress)
    tools = converter_dir(ws)
    known = {m.name for m in ws.models.entries()}
    summary: dict[str, Any] = {"adapter": adapter.name, "adapter_sha256": adapter.sha256, "base": base.name,
                               "registered": [], "checks": []}
    with ws.run("export", command) as run:
        run.event("export_start", adapter=adapter.name, adapter_sha256=adapter.sha256, base=base.name,
                  base_sha256=base.sha256, merge=merge, quant=quant, converters=str(tools))
        (ws.root / "cache").mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=ws.root / "cache", prefix="export-"))
        try:
            t0 = time.perf_counter()
            lora_name = gguf_name(adapter.name)
            if lora_name not in known:
                progress.note(f"converting {adapter.name} to a GGUF LoRA file", STAGE)
                made = adapter_gguf(tools, adapter_dir, dense, work / "adapter.gguf")
                entry = ws.models.register(lora_name, "adapter", made, lineage(adapter, "gguf-lora"),
                                           licence=adapter.licence, description=f"GGUF LoRA of {adapter.name}",
                                           chat_template=adapter.chat_template)
                run.event("model_registered", name=entry.name, role=entry.role, sha256=entry.sha256,
                          lineage=entry.lineage, seconds=round(time.perf_counter() - t0, 1))
                summary["registered"].append(entry.name)
            _, lora_path = ws.models.verified_path(lora_name)
            merged_path = None
            if merge:
                name = merged_name(adapter.name, quant)
                if name not in known:
                    t1 = time.perf_counter()
                    progress.note(f"merging {adapter.name} into {base.name}, f16 GGUF, then {quant}", STAGE)
                    made = merged_gguf(tools, adapter_dir, dense, work, quant, threads)
                    entry = ws.models.register(name, "generator", made, lineage(adapter, "gguf-merged", quant=quant),
                                               licence=adapter.licence, chat_template=base.chat_template,
                                               description=f"{base.name} with {adapter.name} merged, {quant}")
                    run.event("model_registered", name=entry.name, role=entry.role, sha256=entry.sha256,
                              lineage=entry.lineage, seconds=round(time.perf_counter() - t1, 1))
                    summary["registered"].append(entry.name)
                _, merged_path = ws.models.verified_path(name)
            if verify:
                progress.note(f"checking the export against transformers + peft on {prompts} prompts", STAGE)
                results = equivalence(ws, adapter, adapter_dir, base_gguf, dense, lora_path, merged_path, prompts,
                                      new_tokens, threads)
                for r in results:
                    run.event("export_equivalence", **r.to_dict())
                summary["checks"] = [r.to_dict() for r in results]
            summary["seconds"] = round(time.perf_counter() - t0, 1)
            run.event("export_summary", **summary)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        summary["run_id"] = run.run_id
    return summary


def check_prompts(ws: Workspace, dataset_id: str, n: int) -> list[list[dict[str, str]]]:
    """The first `n` validation prompts of the adapter's dataset (unseen in training)."""
    folder = dataset_folder(ws, dataset_id)
    rows = [json.loads(line) for line in (folder / "validation.jsonl").read_text().splitlines() if line.strip()]
    return [r["prompt"] for r in rows[:n]]


def equivalence(ws: Workspace, adapter, adapter_dir, base_gguf, dense, lora_path, merged_path, n: int,  # noqa: ANN001
                new_tokens: int, threads: int) -> list[check.Equivalence]:
    """Base, adapter and (if made) merged forms compared with transformers on the same token ids."""
    from appliance.llm import load_generator

    gen = load_generator(ws, adapter.lineage["base"])
    prompts = [gen.tokens(gen.render_messages(m)[0]) for m in check_prompts(ws, adapter.lineage["dataset_id"], n)]
    eos = {gen.llm.token_eos()}
    del gen
    n_ctx = max(len(p) for p in prompts) + new_tokens + 8
    out = [check.compare("base", base_gguf, None, prompts, check.reference(dense, None, prompts, new_tokens, eos),
                         n_ctx, threads)]
    refs = check.reference(dense, adapter_dir, prompts, new_tokens, eos)
    out.append(check.compare("adapter", base_gguf, lora_path, prompts, refs, n_ctx, threads))
    if merged_path is not None:
        out.append(check.compare("merged", merged_path, None, prompts, refs, n_ctx, threads))
    return out
