"""Generator backends. llama.cpp serves every GGUF model; models are resolved and verified through the manifest."""
from __future__ import annotations

from appliance.config import Config
from appliance.llm.llamacpp import Generation, LlamaCppGenerator, SamplingParams
from appliance.models import verified_path

__all__ = ["Generation", "LlamaCppGenerator", "SamplingParams", "load_generator"]


def load_generator(cfg: Config, model: str | None = None) -> LlamaCppGenerator:
    """Load a generator by model name or role (default: config models.generator), verified against its sha256."""
    entry, path = verified_path(model or cfg.models.generator, cfg.models_dir)
    return LlamaCppGenerator(entry, path, cfg.llm)
