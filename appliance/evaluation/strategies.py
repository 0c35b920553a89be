"""Inference-time scaling strategies: spend more generation on one question before touching weights.

- `single`: one greedy answer.
- `best-of-n`: N samples at a temperature; a verifier that never sees the gold answer picks one: groundedness in
  the context given (share of the answer's content words found in the passages; a refusal scores 0.5, so only
  answers mostly drawn from the passages beat it), agreement with the other samples breaking ties (and deciding
  alone in closed-book, where there is no context).
- `self-consistency`: N samples, majority over normalised short answers (refusals are one answer).
- `council`: four perspectives (analyst, reasoner, explorer, contrarian) answer; a synthesis step merges them.

Samples and perspectives share the prompt up to the question, so llama.cpp evaluates it once (prefix reuse).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from appliance.choices import STRATEGIES
from appliance.config import Config
from appliance.errors import UsageError
from appliance.evaluation.judge import is_refusal
from appliance.llm import Generation, Generator, SamplingParams
from appliance.llm.prompts import PERSPECTIVES, SYNTHESIS, PromptTemplate
from appliance.text import content_words, norm_answer


@dataclass(frozen=True)
class Step:
    """One generation inside a strategy (a sample, a perspective, a synthesis)."""

    role: str
    template_id: str
    params: SamplingParams
    gen: Generation


@dataclass
class StrategyResult:
    """The final answer, every generation that led to it, and how it was chosen."""

    answer: str
    steps: list[Step]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.gen.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.gen.completion_tokens for s in self.steps)

    @property
    def latency_ms(self) -> float:
        return sum(s.gen.latency_ms for s in self.steps)


def groundedness(answer: str, context: str) -> float:
    """Share of the answer's content words that occur in the context (0.5 for a refusal)."""
    if is_refusal(answer):
        return 0.5
    words = content_words(answer)
    if not words:
        return 0.0
    return len(words & content_words(context)) / len(words)


def answer_key(text: str) -> str:
    """The normalised short answer used for voting: first line, first sentence; refusals collapse to one key."""
    if is_refusal(text):
        return "i don't know"
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.split(r"(?<=[a-z)])\.\s", first, maxsplit=1)[0]
    return norm_answer(first)


def _agreement(i: int, keys: list[set[str]]) -> float:
    others = [k for j, k in enumerate(keys) if j != i]
    if not others:
        return 0.0
    return sum(len(keys[i] & o) / (len(keys[i] | o) or 1) for o in others) / len(others)


class StrategyRunner:
    """Runs a named strategy for one question with one generator."""

    def __init__(self, generator: Generator, cfg: Config) -> None:
        self.gen = generator
        self.cfg = cfg
        self.greedy = SamplingParams.from_config(cfg.llm)

    def _sample_params(self, i: int) -> SamplingParams:
        return SamplingParams(temperature=self.cfg.eval.sample_temperature, top_p=0.95,
                              max_tokens=self.greedy.max_tokens, seed=self.greedy.seed + 1 + i)

    def _step(self, role: str, template: PromptTemplate, params: SamplingParams, **fields: str) -> Step:
        prompt, stop = self.gen.render(template, **fields)
        return Step(role, template.id, params, self.gen.generate(prompt, params, stop))

    def run(self, strategy: str, template: PromptTemplate, question: str, context: str = "") -> StrategyResult:
        """Answer `question` (with rendered `context` passages, if the template takes them) by `strategy`."""
        fields = {"question": question} | ({"context": context} if "{context}" in template.user else {})
        if strategy == "single":
            step = self._step("answer", template, self.greedy, **fields)
            return StrategyResult(step.gen.text, [step])
        if strategy in ("best-of-n", "self-consistency"):
            steps = [self._step(f"sample-{i + 1}", template, self._sample_params(i), **fields)
                     for i in range(self.cfg.eval.samples)]
            texts = [s.gen.text for s in steps]
            return self._best_of_n(steps, texts, context) if strategy == "best-of-n" else self._vote(steps, texts)
        if strategy == "council":
            steps = [self._step(name, template, self.greedy,
                                **(fields | {"question": f"{question}\n\n{instruction}"}))
                     for name, instruction in PERSPECTIVES.items()]
            drafts = "\n".join(f"{i}. ({s.role}) {s.gen.text}" for i, s in enumerate(steps, 1))
            synthesis = self._step("synthesis", SYNTHESIS, self.greedy, question=question,
                                   context=context or "(none: answer from your own knowledge)", drafts=drafts)
            return StrategyResult(synthesis.gen.text, [*steps, synthesis],
                                  {"perspectives": {s.role: s.gen.text for s in steps}})
        raise UsageError(f"unknown strategy {strategy!r} (choose {', '.join(STRATEGIES)})")

    def _best_of_n(self, steps: list[Step], texts: list[str], context: str) -> StrategyResult:
        keys = [content_words(t) for t in texts]
        agreement = [_agreement(i, keys) for i in range(len(texts))]
        ground = [groundedness(t, context) if context else 0.0 for t in texts]
        scores = [g + 0.1 * a for g, a in zip(ground, agreement)]
        best = max(range(len(texts)), key=lambda i: (scores[i], -i))
        return StrategyResult(texts[best], steps, {
            "chosen": steps[best].role, "verifier": "groundedness+0.1*agreement" if context else "agreement",
            "scores": [round(s, 4) for s in scores]})

    def _vote(self, steps: list[Step], texts: list[str]) -> StrategyResult:
        keys = [answer_key(t) for t in texts]
        votes = Counter(keys)
        top = max(votes.values())
        winner = next(k for k in keys if votes[k] == top)  # ties: the first answer sampled among the leaders
        chosen = keys.index(winner)
        return StrategyResult(texts[chosen], steps, {"chosen": steps[chosen].role, "votes": dict(votes),
                                                     "majority": round(top / len(keys), 3)})
