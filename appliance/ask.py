"""`appliance ask`: answer one question (from the documents, or closed-book) with a strategy, on the record."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

from appliance import __version__
from appliance.audit import AuditStore
from appliance.evaluation.answers import ContextBuilder, record_answer
from appliance.evaluation.contexts import Context
from appliance.evaluation.strategies import StrategyRunner
from appliance.llm import load_generator
from appliance.llm.prompts import CLOSED_BOOK, CONTEXT
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
    sources: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def ask(ws: Workspace, question: str, rag: bool = True, strategy: str = "single", model: str | None = None,
        groups: list[str] | None = None, command: str = "") -> AskResult:
    """Answer from the retrieved passages (rag) or the model's own knowledge, and record run + answer rows."""
    if not question.strip():
        raise ValueError("the question is empty")
    generator = load_generator(ws.config, model)
    ctx = Context("closed-book")
    if rag:
        builder = ContextBuilder(ws, generator, need_index=True, empty_hint=", or ask with --no-rag")
        ctx, _ = builder.rag(question, groups or [])
    condition = "rag" if rag else "closed-book"
    template = CONTEXT if rag else CLOSED_BOOK
    with AuditStore(ws.audit_path) as store, store.run("ask", command or " ".join(sys.argv),
                                                        ws.config.to_dict(), __version__) as run:
        result = StrategyRunner(generator, ws.config).run(strategy, template, question, ctx.render() if rag else "")
        record_answer(run, None, question, condition, strategy, generator, ctx, result)
        return AskResult(run_id=run.run_id, question=question, answer=result.answer, condition=condition,
                         strategy=strategy, model=generator.entry.name, model_sha256=generator.entry.sha256,
                         template_id=result.steps[-1].template_id, prompt_tokens=result.prompt_tokens,
                         completion_tokens=result.completion_tokens, latency_ms=round(result.latency_ms, 1),
                         sources=[p.record() | {"section": p.section}
                                  for p in sorted(ctx.passages, key=lambda p: p.rank or 0)])
