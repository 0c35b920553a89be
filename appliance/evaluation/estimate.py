"""How long an `eval answers` run will take, said before it starts: tokens to process x speed measured now.

Speed is measured on this machine with this model at the start of the run (one prompt of the run's own kind,
evaluated once for prompt processing and then continued for generation), so it reflects the current load.
Tokens: each condition's prompt for every question (passages estimated from the index's mean chunk size), and
the generations each strategy makes. Samples and perspectives share the prompt prefix, which llama.cpp reuses, so
only their extra tokens count. Judge calls are not included (most answers are settled without the model).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from appliance.config import Config
from appliance.evaluation.golden import Question
from appliance.llm import Generator, SamplingParams
from appliance.llm.prompts import CLOSED_BOOK, CONTEXT, PERSPECTIVES

ASSUMED_COMPLETION = 24     # tokens of a typical short answer (the devset's mean was 16-22)
PASSAGE_HEADER = 16         # tokens of a passage's "[n] (file, p. N - section)" line


@dataclass(frozen=True)
class Estimate:
    """The expected work of a run and its duration at the measured speed."""

    answers: int
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_per_s: float
    completion_tokens_per_s: float
    seconds: float

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"estimate: {self.answers} answers, ~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} "
                f"generated tokens; at the measured {self.prompt_tokens_per_s:.0f} prompt tok/s and "
                f"{self.completion_tokens_per_s:.1f} generated tok/s: about {self.seconds / 60:.1f} min "
                f"(judge calls not included)")


def measure_speed(gen: Generator, prompt: str) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of `gen` now: `prompt` evaluated once, then continued from cache."""
    greedy = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=1, seed=0)
    t0 = time.perf_counter()
    first = gen.generate(prompt, greedy)
    pp = first.prompt_tokens / max(time.perf_counter() - t0, 1e-6)
    more = gen.generate(prompt, SamplingParams(temperature=0.0, top_p=1.0, max_tokens=32, seed=0))
    tg = max(more.completion_tokens, 1) / max(more.latency_ms / 1000, 1e-6)
    return pp, tg


def _strategy_tokens(strategy: str, prompt: int, cfg: Config) -> tuple[int, int]:
    """(prompt tokens to process, tokens to generate) for one answer by `strategy` with a `prompt`-token prompt."""
    c = ASSUMED_COMPLETION
    if strategy in ("best-of-n", "self-consistency"):
        return prompt, cfg.eval.samples * c
    if strategy == "council":
        n = len(PERSPECTIVES)
        synthesis = prompt + n * (c + 8) + 60  # another system prompt: evaluated afresh, with the drafts
        return prompt + n * 30 + synthesis, (n + 1) * c
    return prompt, c


def estimate_run(gen: Generator, cfg: Config, questions: list[Question], conditions: list[str],
                 strategy: str, chunk_tokens: float, speed: tuple[float, float]) -> Estimate:
    """Tokens and seconds for every (question, condition) answer of the run, `chunk_tokens` being the mean size
    of a chunk in the generator's tokens and `speed` what measure_speed() gave."""
    pp, tg = speed
    prompt_total = completion_total = 0
    for q in questions:
        base = {"closed-book": gen.count_tokens(gen.render(CLOSED_BOOK, question=q.question)[0]),
                "context": gen.count_tokens(gen.render(CONTEXT, question=q.question, context="")[0])}
        for cond in conditions:
            if cond == "closed-book":
                prompt = base["closed-book"]
            else:
                n = cfg.eval.context_k if cond == "rag" else max(len(q.evidence), 1)
                prompt = base["context"] + min(int(n * (chunk_tokens + PASSAGE_HEADER)), cfg.eval.context_max_tokens)
            p, c = _strategy_tokens(strategy, prompt, cfg)
            prompt_total += p
            completion_total += c
    seconds = prompt_total / pp + completion_total / tg
    return Estimate(len(questions) * len(conditions), prompt_total, completion_total, round(pp, 1), round(tg, 2),
                    round(seconds, 1))

