"""Generators: the Generator protocol (base.py), llama.cpp serving every GGUF model (llamacpp.py), a scripted fake
for logic tests (fake.py) and the prompt templates (prompts.py). Models are resolved and verified through the
workspace's ModelCatalog (the manifest's models and the workspace's own)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.llm.base import Generation, Generator, Identity, SamplingParams

if TYPE_CHECKING:
    from appliance.llm.llamacpp import LlamaCppGenerator
    from appliance.workspace import Workspace

__all__ = ["Generation", "Generator", "Identity", "SamplingParams", "load_generator"]


def load_generator(ws: Workspace, model: str | None = None) -> LlamaCppGenerator:
    """Load a generator by model name or role (default: config models.generator), verified against its sha256."""
    from appliance.llm.llamacpp import LlamaCppGenerator

    entry, path = ws.models.verified_path(model or ws.config.models.generator)
    return LlamaCppGenerator(entry, path, ws.config.llm)
