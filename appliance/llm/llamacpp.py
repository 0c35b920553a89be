"""The llama.cpp generator backend (llama-cpp-python): one model kept loaded, prompts rendered by us so the exact
text the model saw is what the audit store records."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.config import LLMConfig
from appliance.errors import UsageError
from appliance.llm import adapter_ref
from appliance.llm.base import Generation, Identity, SamplingParams
from appliance.llm.prompts import PLAIN_STOP, PromptTemplate, plain_prompt
from appliance.models import ModelEntry


@dataclass(frozen=True)
class Lora:
    """A GGUF LoRA file to load on top of the base: the adapter's name (as trained), the file's sha256, and the
    strength it is applied at (llama.cpp's --lora-scaled: 1 as trained)."""

    name: str
    path: Path
    sha256: str
    scale: float = 1.0

    def identity(self, scale: float | None = None) -> tuple[str, str]:
        """The adapter as answer rows name it: NAME, or NAME@SCALE at another strength (see `adapter_ref`)."""
        return adapter_ref(self.name, self.scale if scale is None else scale), self.sha256


class LlamaCppGenerator:
    """A GGUF model served by llama.cpp on this machine (CPU, or GPU layers when the build supports it); one
    implementation of the Generator protocol."""

    backend = "llama.cpp"

    def __init__(self, entry: ModelEntry, path: Path, cfg: LLMConfig, lora: Lora | None = None) -> None:
        import llama_cpp

        from appliance.llm.cpu import ensure_loaded

        ensure_loaded(path)
        self.entry = entry
        self.lora = lora
        self.identity = Identity(entry.name, entry.sha256, *(lora.identity() if lora else (None, None)))
        self.cfg = cfg
        self.n_ctx = cfg.n_ctx
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=cfg.n_ctx, n_batch=cfg.n_batch,
            n_threads=cfg.n_threads or os.cpu_count() or 1, seed=cfg.seed,
            n_gpu_layers=-1 if llama_cpp.llama_supports_gpu_offload() else 0, verbose=False,
            lora_path=str(lora.path) if lora else None, lora_scale=lora.scale if lora else 1.0,
        )
        template = self.llm.metadata.get("tokenizer.chat_template") if entry.chat_template else None
        self._grammars: dict[str, object] = {}
        self._bos = self._token_text(self.llm.token_bos())
        self._eos = self._token_text(self.llm.token_eos())
        self._chat = (llama_cpp.llama_chat_format.Jinja2ChatFormatter(template, eos_token=self._eos, bos_token=self._bos)
                      if template else None)

    def use_adapter(self, on: bool, scale: float | None = None) -> None:
        """Switch the loaded adapter on or off (A/B on one loaded model), on at `scale` times its trained strength
        (default: the strength it was loaded at); the identity follows (a scale other than 1 is named in it), the
        prompt cache (computed with the other weights) is dropped."""
        import ctypes

        import llama_cpp

        if self.lora is None:
            raise UsageError("no adapter is loaded to switch")
        scale = self.lora.scale if scale is None else scale
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.llm._lora_adapter)
        scales = (ctypes.c_float * 1)(scale)
        if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, adapters, 1 if on else 0, scales):
            raise UsageError(f"llama.cpp could not switch adapter {self.lora.name} {'on' if on else 'off'}")
        self.llm.reset()
        name, sha = self.lora.identity(scale) if on else (None, None)
        self.identity = Identity(self.entry.name, self.entry.sha256, name, sha)

    def _token_text(self, token: int) -> str:
        return self.llm._model.token_get_text(token) if token != -1 else ""

    def render(self, template: PromptTemplate, **fields: str) -> tuple[str, tuple[str, ...]]:
        """The exact prompt text for this model (its GGUF chat template, or the plain form) and its stop strings."""
        if self._chat is not None:
            return self.render_messages(template.messages(**fields))
        return template.completion(**fields), template.stop

    def render_messages(self, messages: list[dict[str, str]]) -> tuple[str, tuple[str, ...]]:
        """Chat messages through the GGUF's own chat template; a model without one (a base model) gets their
        contents one after another and stops at a blank line."""
        if self._chat is not None:
            return self._chat(messages=messages).prompt, tuple(s for s in [self._eos] if s)
        return plain_prompt(messages), (PLAIN_STOP,)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` for this model (for budgets and estimates)."""
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def tokens(self, prompt: str) -> list[int]:
        """The token ids generate() feeds the model for a rendered prompt (BOS added unless the text has it)."""
        add_special = not (self._bos and prompt.startswith(self._bos))
        return self.llm.tokenize(prompt.encode(), add_bos=add_special, special=True)

    def next_logits(self):  # noqa: ANN201 - a numpy array, numpy imported lazily as elsewhere here
        """The next token's logits after what the context has evaluated (Llama.eval). Read from the context:
        Llama.scores holds rows only for a model loaded with logits_all, which this one is not (they read 0.0)."""
        import numpy as np

        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))

    def stream(self, prompt: str, params: SamplingParams, stop: tuple[str, ...] = ()) -> Iterator[str | Generation]:
        """Generate from an already-rendered prompt piece by piece: yields the text as it comes, then the whole
        Generation (what generate() would have returned)."""
        tokens = self._checked(prompt, params)
        t0 = time.perf_counter()
        parts, finish = [], ""
        for chunk in self.llm.create_completion(tokens, max_tokens=params.max_tokens, temperature=params.temperature,
                                                top_p=params.top_p, seed=params.seed, stop=list(stop) or None,
                                                stream=True):
            choice = chunk["choices"][0]
            if choice["text"]:
                parts.append(choice["text"])
                yield choice["text"]
            finish = choice.get("finish_reason") or finish
        text = "".join(parts)
        yield Generation(text=text.strip(), prompt=prompt, prompt_tokens=len(tokens),
                         completion_tokens=self.count_tokens(text) if text else 0,
                         latency_ms=(time.perf_counter() - t0) * 1000, finish_reason=finish)

    def _checked(self, prompt: str, params: SamplingParams) -> list[int]:
        tokens = self.tokens(prompt)
        if len(tokens) + params.max_tokens > self.cfg.n_ctx:
            raise UsageError(f"prompt of {len(tokens)} tokens + {params.max_tokens} to generate exceeds "
                             f"n_ctx={self.cfg.n_ctx}; shorten it or raise llm.n_ctx")
        return tokens

    def _grammar(self, schema: dict):
        import llama_cpp

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def generate(self, prompt: str, params: SamplingParams, stop: tuple[str, ...] = (),
                 json_schema: dict | None = None) -> Generation:
        """Generate from an already-rendered prompt; with `json_schema` the output is constrained to it by a
        llama.cpp grammar. A prompt sharing a prefix with the previous one reuses its evaluated tokens."""
        tokens = self._checked(prompt, params)
        t0 = time.perf_counter()
        out = self.llm.create_completion(
            tokens, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            seed=params.seed, stop=list(stop) or None,
            grammar=self._grammar(json_schema) if json_schema is not None else None,
        )
        latency_ms = (time.perf_counter() - t0) * 1000
        choice = out["choices"][0]
        usage = out["usage"]
        return Generation(text=choice["text"].strip(), prompt=prompt, prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"], latency_ms=latency_ms,
                          finish_reason=choice.get("finish_reason") or "")
