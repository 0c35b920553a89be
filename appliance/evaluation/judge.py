"""Judging an answer against the gold answer: deterministic checks first, then a reference-guided local judge
whose output is constrained to JSON by a llama.cpp grammar.

Deterministic, in order: refusal detection (settles every unanswerable question and every refused answer),
normalised exact/alias match, numbers with units, short-answer containment. What they cannot settle goes to the
judge model. Its raw output, parsed verdict, model and prompt version are kept; an output that does not parse is
the verdict `unparseable` (counted, never dropped, never a NaN).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from appliance.evaluation.golden import Question
from appliance.llm import Generator, SamplingParams
from appliance.llm.prompts import ANSWER_JUDGE
from appliance.text import norm_answer, numbers, same_quantity, stems

VERDICTS = ("correct", "incorrect", "unparseable")

_REFUSAL = re.compile(
    r"\b(i\s+(do\s+not|don'?t|cannot|can'?t)\s+know|(is|are)\s+not\s+(mentioned|stated|specified|provided|given|"
    r"available|described)|(does|do)\s+not\s+(say|state|mention|specify|contain|provide|include)|"
    r"no\s+(information|mention)|not\s+enough\s+information|cannot\s+(be\s+)?(answer|determine|find)|"
    r"unable\s+to\s+(answer|determine|find)|passages?\s+(do|does)\s+not)", re.I)

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "maxLength": 120},
                   "verdict": {"type": "string", "enum": ["correct", "incorrect"]}},
    "required": ["reason", "verdict"],
}


def is_refusal(text: str) -> bool:
    """The answer declines to answer ("I don't know", "the passages do not say", ...)."""
    return not text.strip() or bool(_REFUSAL.search(text[:300]))


@dataclass
class Verdict:
    """A judgement of one answer."""

    verdict: str                    # correct | incorrect | unparseable
    method: str                     # refusal | exact | alias | number | contains | overlap | echo | judge
    reason: str
    refused: bool
    judge_model: str | None = None
    judge_model_sha256: str | None = None
    judge_template_id: str | None = None
    raw_outputs: list[str] = field(default_factory=list)
    agreement: float | None = None  # share of judge calls agreeing with the verdict (judge only)

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"

    def record(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "method": self.method, "reason": self.reason, "refused": self.refused,
                "judge_model": self.judge_model, "judge_model_sha256": self.judge_model_sha256,
                "judge_template_id": self.judge_template_id, "raw_outputs": self.raw_outputs,
                "agreement": self.agreement}


def deterministic(q: Question, answer: str) -> Verdict | None:
    """Settle what can be settled without a model; None when the judge must decide.

    correct: exact or alias match; every number of a short gold answer stated; a short gold answer (or alias)
    contained as a phrase; every content word of the gold answer or of an alias present.
    incorrect: refusals of answerable questions; a gold answer with numbers where the answer states other numbers
    and none of the gold's; a short gold answer sharing no content word or number with the answer; an answer that
    only restates the question (a small judge passes an echo of the question as correct: measured on held-out
    material, 2 of 13 judge-settled answers).
    """
    refused = is_refusal(answer)
    if not q.answerable:
        return Verdict("correct" if refused else "incorrect", "refusal",
                       "refused an unanswerable question" if refused else "answered an unanswerable question", refused)
    if refused:
        return Verdict("incorrect", "refusal", "refused although the documents answer it", True)
    got = norm_answer(answer)
    golds = [q.answer, *q.aliases]
    for i, gold in enumerate(golds):
        g = norm_answer(gold)
        if g and got == g:
            return Verdict("correct", "exact" if i == 0 else "alias", f"matches {gold!r}", False)
    gold_numbers, got_numbers = numbers(q.answer), numbers(answer)
    if gold_numbers and len(q.answer.split()) <= 4 and all(same_quantity(n, got_numbers) for n in gold_numbers):
        return Verdict("correct", "number", f"states {', '.join(sorted(gold_numbers))}", False)
    for gold in golds:
        g = norm_answer(gold)
        if g and len(g.split()) <= 6 and not numbers(g) and re.search(rf"(?<![\w.-]){re.escape(g)}(?![\w-]|\.\w)", got):
            return Verdict("correct", "contains", f"contains {gold!r}", False)
    got_words = stems(answer)
    for gold in golds:
        need = stems(gold)
        if len(need) >= 2 and need <= got_words and all(same_quantity(n, got_numbers) for n in numbers(gold)):
            return Verdict("correct", "overlap", f"states every content word of {gold!r}", False)
    if gold_numbers and got_numbers and not any(same_quantity(n, got_numbers) for n in gold_numbers):
        return Verdict("incorrect", "number", f"states {', '.join(sorted(got_numbers))}, not "
                                              f"{', '.join(sorted(gold_numbers))}", False)
    if len(stems(q.answer)) <= 6 and not any(stems(g) & got_words or numbers(g) & got_numbers for g in golds):
        return Verdict("incorrect", "overlap", "shares no content word or number with the gold answer or aliases",
                       False)
    if got_words <= stems(q.question) and got_numbers <= numbers(q.question):
        return Verdict("incorrect", "echo", "only restates the question: no word or number the question lacks", False)
    return None


def parse_judgement(raw: str) -> tuple[str, str]:
    """(verdict, reason) from the judge's JSON; ('unparseable', why) when it is not what the grammar allows."""
    try:
        obj = json.loads(raw)
        verdict = obj["verdict"]
        if verdict not in ("correct", "incorrect"):
            raise ValueError(f"verdict {verdict!r}")
        return verdict, str(obj.get("reason", ""))
    except (ValueError, KeyError, TypeError) as e:
        return "unparseable", f"judge output did not parse ({e})"


def ask_judge(judge: Generator, prompt: str, stop: tuple[str, ...], schema: dict, repeats: int, seed: int,
              max_tokens: int) -> list[str]:
    """The judge's raw outputs for `prompt`, constrained to `schema`: the first greedy, the repeats sampled at T=0.7
    with other seeds (so their agreement means something)."""
    return [judge.generate(prompt, SamplingParams(temperature=0.0 if i == 0 else 0.7, top_p=1.0, max_tokens=max_tokens,
                                                  seed=seed + i), stop, json_schema=schema).text
            for i in range(repeats)]


class AnswerJudge:
    """Deterministic checks, then the reference-guided judge model (asked `repeats` times, majority verdict)."""

    def __init__(self, judge: Generator, repeats: int = 1, seed: int = 0) -> None:
        self.judge = judge
        self.repeats = repeats
        self.seed = seed

    def __call__(self, q: Question, answer: str) -> Verdict:
        settled = deterministic(q, answer)
        return settled if settled is not None else self.by_model(q, answer)

    def by_model(self, q: Question, answer: str) -> Verdict:
        """The judge model's verdict alone (what the checks could not settle; `eval crosscheck` asks it about what
        they did settle)."""
        reference = q.answer + (f" (also accepted: {'; '.join(q.aliases)})" if q.aliases else "")
        prompt, stop = self.judge.render(ANSWER_JUDGE, question=q.question, reference=reference, candidate=answer)
        raws = ask_judge(self.judge, prompt, stop, JUDGE_SCHEMA, self.repeats, self.seed, max_tokens=80)
        parsed = [parse_judgement(raw) for raw in raws]
        votes = Counter(v for v, _ in parsed)
        verdict, count = votes.most_common(1)[0]
        reason = next(r for v, r in parsed if v == verdict)
        who = self.judge.identity
        return Verdict(verdict, "judge", reason, False, judge_model=who.model, judge_model_sha256=who.model_sha256,
                       judge_template_id=ANSWER_JUDGE.id, raw_outputs=raws, agreement=round(count / len(parsed), 3))
