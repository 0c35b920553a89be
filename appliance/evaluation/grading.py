"""Grading one question's answers, condition by condition: judge each answer, attribute each failure (rag against
the oracle's verdict), record the judgement row, and keep the outcome the summary and the report show. `eval
answers` grades what it just generated; `eval rejudge` grades stored answers again, through the same steps."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from appliance.evaluation.attribution import failure_kind
from appliance.evaluation.golden import Question
from appliance.evaluation.judge import AnswerJudge, Verdict
from appliance.evaluation.report import record_reports, run_report
from appliance.evaluation.stats import wilson

if TYPE_CHECKING:
    from appliance.audit import Run
    from appliance.workspace import Workspace


@dataclass(frozen=True)
class AnswerOutcome:
    """One judged answer of a run (what the summary and the report show per question; stored whole in each
    question_done event, so a resumed run rebuilds its summary from them)."""

    id: str
    kind: str
    condition: str
    answer: str
    verdict: str
    method: str
    failure_kind: str
    evidence_in_context: bool | None
    passages: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float          # generation only
    wall_ms: float | None      # context, generation and judging (None: not measured, e.g. an old re-judged run)


def record_judgement(run: Run, answer_hash: str, q: Question, condition: str, strategy: str, verdict: Verdict,
                     evidence_in_context: bool | None, kind: str) -> str:
    """The judgements row of one final answer (`answer_hash`: its answers row, possibly of an earlier run)."""
    return run.append("judgements", answer_row_hash=answer_hash, question_id=q.id, kind=q.kind, condition=condition,
                      strategy=strategy, verdict=verdict.verdict, method=verdict.method, reason=verdict.reason,
                      refused=verdict.refused, judge_model=verdict.judge_model,
                      judge_model_sha256=verdict.judge_model_sha256, judge_template_id=verdict.judge_template_id,
                      raw_outputs_json=verdict.raw_outputs, agreement=verdict.agreement,
                      evidence_in_context=evidence_in_context, failure_kind=kind)


class QuestionGrading:
    """The grading of one question's answers, given in condition order (closed-book, oracle, rag)."""

    def __init__(self, judge: AnswerJudge, run: Run, q: Question, strategy: str) -> None:
        self.judge, self.run, self.q, self.strategy = judge, run, q, strategy
        self.oracle_correct: bool | None = None   # None: no oracle answer (yet), or its judgement did not parse

    def grade(self, condition: str, answer: str, answer_hash: str, evidence_in_context: bool | None, passages: int,
              prompt_tokens: int, completion_tokens: int, latency_ms: float,
              wall_ms: float | None = None) -> AnswerOutcome:
        """Judge `answer`, attribute a failure, record the judgement; the outcome of this answer."""
        q = self.q
        verdict = self.judge(q, answer)
        kind = failure_kind(condition, q.answerable, verdict, evidence_in_context, self.oracle_correct)
        if condition == "oracle":
            self.oracle_correct = verdict.correct if verdict.verdict != "unparseable" else None
        record_judgement(self.run, answer_hash, q, condition, self.strategy, verdict, evidence_in_context, kind)
        return AnswerOutcome(q.id, q.kind, condition, answer, verdict.verdict, verdict.method, kind,
                             evidence_in_context, passages, prompt_tokens, completion_tokens, round(latency_ms, 1),
                             None if wall_ms is None else round(wall_ms, 1))


def summarise_outcomes(outcomes: list[AnswerOutcome], conditions: list[str]) -> dict[str, Any]:
    """Accuracy, failures and cost per condition (and accuracy by question kind)."""
    out = {}
    for cond in conditions:
        rows = [o for o in outcomes if o.condition == cond]
        n = len(rows)
        unans = [o for o in rows if o.kind == "unanswerable"]
        walls = [o.wall_ms for o in rows if o.wall_ms is not None]
        out[cond] = {
            "n": n, "correct": sum(o.verdict == "correct" for o in rows), "accuracy": _share(rows),
            "answerable_accuracy": _share([o for o in rows if o.kind != "unanswerable"]),
            "unanswerable_refused": f"{sum(o.verdict == 'correct' for o in unans)}/{len(unans)}",
            "unanswerable_refused_ci95": wilson(sum(o.verdict == "correct" for o in unans), len(unans)),
            "answerable_correct_ci95": wilson(sum(o.verdict == "correct" for o in rows if o.kind != "unanswerable"),
                                              sum(o.kind != "unanswerable" for o in rows)),
            "by_kind": {k: {"n": sum(o.kind == k for o in rows), "accuracy": _share([o for o in rows if o.kind == k])}
                        for k in sorted({o.kind for o in rows})},
            "failures": {k: v for k, v in Counter(o.failure_kind for o in rows).items() if k != "correct"},
            "unparseable": sum(o.verdict == "unparseable" for o in rows),
            "judged_by": dict(Counter(o.method for o in rows)),
            "prompt_tokens_mean": round(sum(o.prompt_tokens for o in rows) / n, 1) if n else None,
            "generation_seconds_per_question": round(sum(o.latency_ms for o in rows) / n / 1000, 2) if n else None,
            "seconds_per_question": round(sum(walls) / len(walls) / 1000, 2) if walls and len(walls) == n else None,
        }
    return out


def _share(rows: list[AnswerOutcome]) -> float | None:
    return round(sum(o.verdict == "correct" for o in rows) / len(rows), 4) if rows else None


def finish(ws: Workspace, run: Run, summary: dict[str, Any], outcomes: list[AnswerOutcome]) -> dict[str, Any]:
    """Record the run's summary, write its reports (recorded with their sha256) and return the summary with the
    run id, every judged answer and the report paths."""
    run.event("eval_answers_summary", **summary)
    summary["run_id"] = run.run_id
    summary["questions"] = [asdict(o) for o in outcomes]
    record_reports(run, run_report(ws, summary), summary)
    return summary
