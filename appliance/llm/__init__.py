"""Generators: the Generator protocol (base.py), llama.cpp serving every GGUF model (llamacpp.py), a scripted fake
for logic tests (fake.py) and the prompt templates (prompts.py). Models are resolved and verified through the
workspace's ModelCatalog (the manifest's models and the workspace's own)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import ModelError, UsageError
from appliance.llm.base import Generation, Generator, Identity, SamplingParams

if TYPE_CHECKING:
    from appliance.llm.llamacpp import LlamaCppGenerator
    from appliance.models import ModelEntry
    from appliance.workspace import Workspace

__all__ = ["Generation", "Generator", "Identity", "SamplingParams", "adapter_ref", "load_generator", "parse_adapter"]

MAX_ADAPTER_SCALE = 4.0     # beyond a few times its trained strength an adapter is noise, not a setting


def parse_adapter(ref: str) -> tuple[str, float]:
    """An adapter as named on the command line and in answer rows: NAME (as trained), or NAME@SCALE, the adapter
    applied at SCALE times its trained strength (llama.cpp's --lora-scaled), e.g. `dev-lora@0.5`."""
    name, sep, text = ref.rpartition("@")
    if not sep:
        return ref, 1.0
    try:
        scale = float(text)
    except ValueError:
        raise UsageError(f"adapter {ref!r}: after '@' comes the strength it is applied at, a number "
                         f"(e.g. {name}@0.5)") from None
    if not 0 < scale <= MAX_ADAPTER_SCALE:
        raise UsageError(f"adapter {ref!r}: the strength must be above 0 and at most {MAX_ADAPTER_SCALE:g}")
    return name, scale


def adapter_ref(name: str, scale: float = 1.0) -> str:
    """The reference `parse_adapter` reads back: NAME at its trained strength, NAME@SCALE at another."""
    return name if scale == 1.0 else f"{name}@{scale:g}"


def load_generator(ws: Workspace, model: str | None = None, adapter: str | None = None) -> LlamaCppGenerator:
    """Load a generator by model name or role (default: config models.generator, or the adapter's base), verified
    against its sha256, with an adapter trained here on top (by the name it was trained under, or its GGUF
    export's; NAME@SCALE at another strength, see `parse_adapter`). An adapter for other weights is refused with
    both hashes named."""
    from appliance.llm.llamacpp import LlamaCppGenerator, Lora

    if adapter is None:
        entry, path = ws.models.verified_path(model or ws.config.models.generator)
        return LlamaCppGenerator(entry, path, ws.config.llm)
    adapter, scale = parse_adapter(adapter)
    lora_entry, lora_path = gguf_adapter(ws, adapter)
    entry, path = ws.models.verified_path(model or lora_entry.lineage["base"])
    if entry.sha256 != lora_entry.lineage["base_sha256"]:
        raise ModelError(f"adapter {lora_entry.lineage['adapter']} was trained on {lora_entry.lineage['base']} "
                         f"(sha256 {lora_entry.lineage['base_sha256']}); model {entry.name} is sha256 {entry.sha256}")
    lora = Lora(lora_entry.lineage["adapter"], lora_path, lora_entry.sha256, scale)
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
