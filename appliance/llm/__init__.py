"""Generators: the Generator protocol (base.py), llama.cpp serving every GGUF model (llamacpp.py), a scripted fake
for logic tests (fake.py) and the prompt templates (prompts.py). Models are resolved and verified through the
workspace's ModelCatalog (the manifest's models and the workspace's own)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import ModelError
from appliance.llm.base import Generation, Generator, Identity, SamplingParams

if TYPE_CHECKING:
    from appliance.llm.llamacpp import LlamaCppGenerator
    from appliance.models import ModelEntry
    from appliance.workspace import Workspace

__all__ = ["Generation", "Generator", "Identity", "SamplingParams", "load_generator"]


def load_generator(ws: Workspace, model: str | None = None, adapter: str | None = None) -> LlamaCppGenerator:
    """Load a generator by model name or role (default: config models.generator, or the adapter's base), verified
    against its sha256, with an adapter trained here on top (by the name it was trained under, or its GGUF
    export's). An adapter for other weights is refused with both hashes named."""
    from appliance.llm.llamacpp import LlamaCppGenerator, Lora

    if adapter is None:
        entry, path = ws.models.verified_path(model or ws.config.models.generator)
        return LlamaCppGenerator(entry, path, ws.config.llm)
    lora_entry, lora_path = gguf_adapter(ws, adapter)
    entry, path = ws.models.verified_path(model or lora_entry.lineage["base"])
    if entry.sha256 != lora_entry.lineage["base_sha256"]:
        raise ModelError(f"adapter {lora_entry.lineage['adapter']} was trained on {lora_entry.lineage['base']} "
                         f"(sha256 {lora_entry.lineage['base_sha256']}); model {entry.name} is sha256 {entry.sha256}")
    lora = Lora(lora_entry.lineage["adapter"], lora_path, lora_entry.sha256)
    return LlamaCppGenerator(entry, path, ws.config.llm, lora)


def gguf_adapter(ws: Workspace, name: str) -> tuple[ModelEntry, Path]:
    """The GGUF LoRA file of an adapter (named as trained, or as exported), verified."""
    entry = ws.models.get(name)
    if entry.role != "adapter":
        raise ModelError(f"{name!r} is a {entry.role}, not an adapter (`appliance models` lists adapters)")
    if entry.lineage.get("format") != "gguf-lora":
        exports = [m for m in ws.models.registered()
                   if m.lineage.get("format") == "gguf-lora" and m.lineage.get("adapter") == entry.name]
        if not exports:
            raise ModelError(f"adapter {name} has no GGUF export yet: `appliance export gguf --adapter {name}`")
        if exports[-1].lineage.get("adapter_sha256") != entry.sha256:
            raise ModelError(f"the GGUF export of {name} was made from other adapter bytes; export it again")
        entry = exports[-1]
    return ws.models.verified_path(entry.name)
