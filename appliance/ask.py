"""`appliance ask`: answer one question (from the documents, or closed-book) with a strategy, on the record."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from appliance.answering import Answerer
from appliance.errors import UsageError
from appliance.llm import Generator, load_generator
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
    adapter: str | None
    adapter_sha256: str | None
    template_id: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    sources: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def ask(ws: Workspace, question: str, rag: bool = True, strategy: str = "single", model: str | None = None,
        groups: list[str] | None = None, command: str = "", generator: Generator | None = None,
        adapter: str | None = None) -> AskResult:
    """Answer from the retrieved passages (rag) or the model's own knowledge, and record run + answer rows."""
    if not question.strip():
        raise UsageError("the question is empty")
    gen = generator or load_generator(ws, model, adapter)
    answerer = Answerer.open(ws, gen, need_index=rag, empty_hint=", or ask with --no-rag")
    with ws.run("ask", command) as run:
        ans = answerer.answer(question, "rag" if rag else "closed-book", strategy, groups, run=run)
        r, who = ans.result, gen.identity
        return AskResult(run_id=run.run_id, question=question, answer=ans.text, condition=ans.condition,
                         strategy=strategy, model=who.model, model_sha256=who.model_sha256, adapter=who.adapter,
                         adapter_sha256=who.adapter_sha256, template_id=r.steps[-1].template_id,
                         prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                         latency_ms=round(r.latency_ms, 1),
                         sources=[p.record() | {"section": p.section}
                                  for p in sorted(ans.context.passages, key=lambda p: p.rank or 0)])
