"""`appliance eval rejudge RUN`: judge the final answers of an earlier `eval answers` run again, with the judge
(and the answer key) as they are now, without generating anything.

The audit store is append-only, so a changed judge or a corrected gold answer cannot rewrite old verdicts. The
re-judgement is a new run (kind `eval-rejudge`) whose judgements point at the old run's answer rows; failures are
attributed again (rag against the re-judged oracle) through the same grading steps as `eval answers`. `compare`
takes it like any evaluation run.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit import AuditStore
from appliance.errors import UsageError
from appliance.evaluation.answers import parse_conditions
from appliance.evaluation.golden import load_questions
from appliance.evaluation.grading import AnswerOutcome, QuestionGrading, finish, summarise_outcomes
from appliance.evaluation.judge import AnswerJudge
from appliance.llm import Generator, load_generator
from appliance.progress import Progress
from appliance.workspace import Workspace

STAGE = "eval rejudge"


@dataclass(frozen=True)
class StoredAnswer:
    """A judged final answer of the source run, as its rows recorded it."""

    question_id: str
    condition: str
    evidence_in_context: bool | None
    row_hash: str
    output: str
    passages: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    wall_ms: float | None          # from the source run's question_done event, where it has one


def source_answers(store: AuditStore, prefix: str) -> tuple[str, dict[str, Any], list[StoredAnswer]]:
    """The source run's id, its eval_answers_start payload, and its judged final answers in judging order."""
    run_id = store.find_run(prefix, ("eval-answers",)).run_id
    start = store.events(run_id, "eval_answers_start")[0]
    walls = {(o["id"], o["condition"]): o.get("wall_ms")
             for e in store.events(run_id, "question_done") for o in e["outcomes"]}
    answers = {a["row_hash"]: a for a in store.rows("answers", run_id)}
    stored = []
    for j in store.rows("judgements", run_id):
        a = answers[j["answer_row_hash"]]
        stored.append(StoredAnswer(j["question_id"], j["condition"], j["evidence_in_context"], a["row_hash"],
                                   a["output"], len(json.loads(a["retrieved_json"] or "[]")), a["prompt_tokens"],
                                   a["completion_tokens"], a["latency_ms"],
                                   walls.get((j["question_id"], j["condition"]))))
    return run_id, start, stored


def rejudge_run(ws: Workspace, run_prefix: str, questions_path: Path | None = None,
                progress: Progress | None = None, command: str = "",
                judge_generator: Generator | None = None) -> dict[str, Any]:
    """Judge every final answer of run `run_prefix` again (against `questions_path`, default the run's own golden
    set); record a new run and return its summary, like `eval answers` does."""
    progress = progress or Progress()
    cfg = ws.config
    t_start = time.perf_counter()
    with AuditStore(ws.audit_path) as store:
        source, start, answers = source_answers(store, run_prefix)
    if not answers:
        raise UsageError(f"run {source} has no judged answers to judge again")
    questions_path = questions_path or Path(start["questions_file"])
    questions = {q.id: q for q in load_questions(questions_path)}
    questions_sha = hashlib.sha256(questions_path.read_bytes()).hexdigest()
    missing = sorted({a.question_id for a in answers} - set(questions))
    if missing:
        raise UsageError(f"{questions_path} lacks questions {', '.join(missing)} of run {source}")
    if questions_sha != start["questions_sha256"]:
        progress.note(f"note: {questions_path} differs from the golden set run {source} was judged against", STAGE)
    judge_gen = judge_generator or load_generator(ws, cfg.eval.judge_model)
    judge = AnswerJudge(judge_gen, repeats=cfg.eval.judge_repeats, seed=cfg.llm.seed)
    conditions = parse_conditions(start["conditions"])
    answers.sort(key=lambda a: conditions.index(a.condition))  # oracle before rag, per question
    order = list(dict.fromkeys(a.question_id for a in answers))
    outcomes: list[AnswerOutcome] = []
    with ws.run("eval-rejudge", command) as run:
        run.event("rejudge_start", of=source, questions_file=str(questions_path), questions_sha256=questions_sha,
                  judge_model=judge_gen.identity.model, judge_model_sha256=judge_gen.identity.model_sha256,
                  answers=len(answers))
        progress.start(STAGE, len(order), "questions")
        for i, qid in enumerate(order, 1):
            grading = QuestionGrading(judge, run, questions[qid], start["strategy"])
            outcomes += [grading.grade(a.condition, a.output, a.row_hash, a.evidence_in_context, a.passages,
                                       a.prompt_tokens, a.completion_tokens, a.latency_ms, a.wall_ms)
                         for a in answers if a.question_id == qid]
            run.flush()
            progress.advance(STAGE, i, len(order), "questions", qid)
        outcomes.sort(key=lambda o: (order.index(o.id), conditions.index(o.condition)))
        summary = {"strategy": start["strategy"], "model": start["model"], "model_sha256": start["model_sha256"],
                   "adapter": start.get("adapter"), "adapter_sha256": start.get("adapter_sha256"),
                   "judge_model": judge_gen.identity.model, "questions_file": str(questions_path),
                   "n_questions": len(order), "conditions": summarise_outcomes(outcomes, conditions),
                   "synthetic": any(q.extra.get("synthetic") for q in questions.values()),
                   "seconds": round(time.perf_counter() - t_start, 1), "rejudged": source}
        return finish(ws, run, summary, outcomes)
