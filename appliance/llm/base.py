"""The Generator protocol: what every rung asks of a language model, whatever serves it.

A generator renders prompts itself (so the exact text the model saw is what the audit store records), counts
tokens, generates (optionally constrained to a JSON schema) and says exactly which weights answered: the model's
name and sha256, and the adapter's id and sha256 when one is loaded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from appliance.llm.prompts import PromptTemplate


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one generation (recorded with it)."""

    temperature: float
    top_p: float
    max_tokens: int
    seed: int

    @classmethod
    def from_config(cls, cfg: Any) -> SamplingParams:
        """Greedy (or whatever [llm] says) settings from the LLM config section."""
        return cls(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed)


@dataclass(frozen=True)
class Generation:
    """What a generation produced, with the exact prompt and its cost."""

    text: str
    prompt: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str


@dataclass(frozen=True)
class Identity:
    """Exactly which weights answer: the model file, and the adapter on top of it (if any)."""

    model: str
    model_sha256: str
    adapter: str | None = None
    adapter_sha256: str | None = None

    def record(self) -> dict[str, Any]:
        """The answer-row columns that name the weights."""
        return {"model_name": self.model, "model_sha256": self.model_sha256, "adapter_id": self.adapter,
                "adapter_sha256": self.adapter_sha256}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Generator(Protocol):
    """A language model the appliance can ask: llama.cpp in the product, a scripted fake in logic tests."""

    backend: str
    identity: Identity
    n_ctx: int

    def render(self, template: PromptTemplate, **fields: str) -> tuple[str, tuple[str, ...]]:
        """The exact prompt text of `template` for this model, and its stop strings."""
        ...

    def render_messages(self, messages: list[dict[str, str]]) -> tuple[str, tuple[str, ...]]:
        """The exact prompt text of chat `messages` (role, content) for this model, and its stop strings."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` for this model (for budgets and estimates)."""
        ...

    def generate(self, prompt: str, params: SamplingParams, stop: tuple[str, ...] = (),
                 json_schema: dict | None = None) -> Generation:
        """Generate from an already-rendered prompt; with `json_schema` the output is constrained to it."""
        ...
