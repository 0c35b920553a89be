"""`appliance ask`: answer one question with the generator and put the answer on the record."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass

from appliance import __version__
from appliance.audit import AuditStore
from appliance.llm import SamplingParams, load_generator
from appliance.llm.prompts import CLOSED_BOOK
from appliance.workspace import Workspace


@dataclass(frozen=True)
class AskResult:
    """An answer as the CLI reports it."""

    run_id: str
    question: str
    answer: str
    condition: str
    strategy: str
    model: str
    model_sha256: str
    template_id: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def ask_closed_book(ws: Workspace, question: str, model: str | None = None, command: str = "") -> AskResult:
    """Answer from the model's own knowledge (no retrieval) and record run + answer in the audit store."""
    if not question.strip():
        raise ValueError("the question is empty")
    generator = load_generator(ws.config, model)
    params = SamplingParams.from_config(ws.config.llm)
    prompt, stop = generator.render(CLOSED_BOOK, question=question)
    with AuditStore(ws.audit_path) as store, store.run("ask", command or " ".join(sys.argv),
                                                        ws.config.to_dict(), __version__) as run:
        gen = generator.generate(prompt, params, stop)
        run.append(
            "answers", question_id=None, question=question, condition="closed-book", strategy="single",
            model_name=generator.entry.name, model_sha256=generator.entry.sha256, adapter_id=None,
            adapter_sha256=None, template_id=CLOSED_BOOK.id, prompt=gen.prompt,
            prompt_sha256=hashlib.sha256(gen.prompt.encode()).hexdigest(), retrieved_json=[],
            params_json=asdict(params) | {"backend": generator.backend, "n_ctx": ws.config.llm.n_ctx,
                                          "chat_template": generator.uses_chat_template},
            seed=params.seed, output=gen.text, finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens, latency_ms=gen.latency_ms,
        )
        return AskResult(run_id=run.run_id, question=question, answer=gen.text, condition="closed-book",
                         strategy="single", model=generator.entry.name, model_sha256=generator.entry.sha256,
                         template_id=CLOSED_BOOK.id, prompt_tokens=gen.prompt_tokens,
                         completion_tokens=gen.completion_tokens, latency_ms=round(gen.latency_ms, 1))
