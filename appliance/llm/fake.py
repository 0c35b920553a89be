"""A scripted generator for tests that check logic, not a model: outputs come from a list (or a function of the
prompt), prompts are rendered in a plain, readable form and tokens are counted as words."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from appliance.llm.base import Generation, Identity, SamplingParams
from appliance.llm.prompts import PromptTemplate

Script = Callable[[str, SamplingParams, dict | None], str]


class FakeGenerator:
    """Answers with scripted outputs, in order (or `script(prompt, params, json_schema)`); every call is kept in
    `calls` as (prompt, params, json_schema). Running out of scripted outputs is an error, not a silent default."""

    backend = "fake"

    def __init__(self, outputs: Iterable[str] | Script = (), name: str = "fake-model", sha256: str = "f" * 64,
                 adapter: str | None = None, adapter_sha256: str | None = None, n_ctx: int = 4096) -> None:
        self._script: Script | None = outputs if callable(outputs) else None
        self._outputs = [] if callable(outputs) else list(outputs)
        self.identity = Identity(name, sha256, adapter, adapter_sha256)
        self.n_ctx = n_ctx
        self.calls: list[tuple[str, SamplingParams, dict | None]] = []

    def render_messages(self, messages: list[dict[str, str]]) -> tuple[str, tuple[str, ...]]:
        text = "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"
        return text, ("<end>",)

    def render(self, template: PromptTemplate, **fields: str) -> tuple[str, tuple[str, ...]]:
        return self.render_messages(template.messages(**fields))

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompt: str, params: SamplingParams, stop: tuple[str, ...] = (),
                 json_schema: dict | None = None) -> Generation:
        self.calls.append((prompt, params, json_schema))
        if self._script is not None:
            text = self._script(prompt, params, json_schema)
        elif self._outputs:
            text = self._outputs.pop(0)
        else:
            raise AssertionError(f"FakeGenerator ran out of scripted outputs at call {len(self.calls)}")
        return Generation(text=text.strip(), prompt=prompt, prompt_tokens=self.count_tokens(prompt),
                          completion_tokens=self.count_tokens(text), latency_ms=1.0, finish_reason="stop")
