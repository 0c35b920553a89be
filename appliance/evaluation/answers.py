"""`appliance eval answers`: answer every golden question under each condition with a strategy, judge each answer,
attribute each failure, and put all of it on the record.

Per question the conditions run in the order closed-book, oracle, rag, so the rag failure can be told apart:
evidence not retrieved (retrieval_miss), evidence retrieved but the oracle answer right (context_misuse), or the
model wrong even with the gold chunk (model_limit). One model stays loaded for the whole run; when the judge is the
same model it is shared. A killed or cancelled run goes on with `--resume RUN_ID` from its first unfinished
question, in the same run.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from appliance.answering import Answerer, Passage
from appliance.audit import Run
from appliance.choices import CONDITIONS, STRATEGIES
from appliance.config import Config
from appliance.errors import UsageError
from appliance.evaluation.estimate import Estimate, estimate_run, measure_speed
from appliance.evaluation.golden import Question, load_questions
from appliance.evaluation.grading import AnswerOutcome, QuestionGrading, finish, summarise_outcomes
from appliance.evaluation.judge import AnswerJudge
from appliance.llm import Generator, load_generator
from appliance.llm.prompts import CLOSED_BOOK, CONTEXT
from appliance.progress import Progress
from appliance.resume import find_resumable, process_event
from appliance.workspace import Workspace

STAGE = "eval answers"
# The configuration sections an evaluation reads: a resumed run must find them as it left them (keys added by a
# newer appliance, and other sections, do not matter).
RESUME_SECTIONS = ("models", "llm", "retrieval", "eval")


def parse_conditions(value: str | list[str] | None) -> list[str]:
    """Conditions in run order (closed-book, oracle, rag), refusing unknown names."""
    names = value.split(",") if isinstance(value, str) else list(value or CONDITIONS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise UsageError(f"unknown condition(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(CONDITIONS)}")
    return [c for c in CONDITIONS if c in names]


@dataclass(frozen=True)
class Plan:
    """What a run is asked to do (recorded as its eval_answers_start event; a resumed run reads it back)."""

    questions_file: Path
    questions_sha256: str
    questions: list[Question]
    conditions: list[str]
    strategy: str
    model: str | None
    groups: list[str]
    adapter: str | None = None

    @classmethod
    def make(cls, questions_file: Path | None, conditions: str | list[str] | None, strategy: str, model: str | None,
             groups: list[str] | None, limit: int | None, adapter: str | None = None) -> Plan:
        if questions_file is None:
            raise UsageError("give --questions FILE (or --resume RUN_ID)")
        if strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {strategy!r} (choose {', '.join(STRATEGIES)})")
        conditions = parse_conditions(conditions)
        questions = load_questions(questions_file)[: limit or None]
        digest = hashlib.sha256(questions_file.read_bytes()).hexdigest()
        return cls(questions_file, digest, questions, conditions, strategy, model, list(groups or []), adapter)


@dataclass(frozen=True)
class ResumePoint:
    """A killed run: its id, what it was asked to do, and the questions it finished (each written whole)."""

    run_id: str
    plan: Plan
    model_sha256: str
    done: list[AnswerOutcome]


def resume_point(ws: Workspace, run_prefix: str) -> ResumePoint:
    """The unclosed `eval answers` run named by `run_prefix` (see find_resumable), refused also if its questions
    file changed."""
    r = find_resumable(ws, run_prefix, "eval-answers", "eval_answers_start", RESUME_SECTIONS, "question_done")
    start = r.start
    plan = Plan.make(Path(start["questions_file"]), start["conditions"], start["strategy"], start["model"],
                     start.get("groups"), start["n_questions"], start.get("adapter"))
    if plan.questions_sha256 != start["questions_sha256"]:
        raise UsageError(f"{plan.questions_file} changed since run {r.run_id} started; it cannot be resumed")
    outcomes = [AnswerOutcome(**o) for event in r.done for o in event["outcomes"]]
    return ResumePoint(r.run_id, plan, start["model_sha256"], outcomes)


def _estimate(gen: Generator, cfg: Config, answerer: Answerer, questions: list[Question], plan: Plan
              ) -> Estimate | None:
    """The run's expected duration, from a speed measured now on a prompt like the run's own."""
    if not questions:
        return None
    texts = []
    if answerer.retriever is not None:  # up to 50 chunks the run may show, spread over the index
        visible = answerer.retriever.visible(sorted(set(plan.groups) | set(questions[0].groups)))
        texts = [c["text"] for c, _ in visible[:: max(len(visible) // 50, 1)][:50]]
    chunk_tokens = sum(map(gen.count_tokens, texts)) / len(texts) if texts else 0.0
    prompt = (gen.render(CONTEXT, question=questions[0].question, context="\n\n".join(texts[:cfg.eval.context_k]))[0]
              if texts else gen.render(CLOSED_BOOK, question=questions[0].question)[0])
    return estimate_run(gen, cfg, questions, plan.conditions, plan.strategy, chunk_tokens, measure_speed(gen, prompt))


def _start_event(plan: Plan, point: ResumePoint | None, command: str, gen: Generator,
                 judge: Generator) -> tuple[str, dict[str, Any]]:
    """The first event of this process's work on the run: what a new run is asked to do, or who resumed it."""
    if point is not None:
        return "run_resumed", process_event(command, questions_done=sorted({o.id for o in point.done}))
    return "eval_answers_start", process_event(
        command, questions_file=str(plan.questions_file), questions_sha256=plan.questions_sha256,
        conditions=plan.conditions, strategy=plan.strategy, model=gen.identity.model,
        model_sha256=gen.identity.model_sha256, adapter=gen.identity.adapter,
        adapter_sha256=gen.identity.adapter_sha256, judge_model=judge.identity.model,
        n_questions=len(plan.questions), groups=plan.groups)


def _answer_question(run: Run, answerer: Answerer, judge: AnswerJudge, plan: Plan, q: Question
                     ) -> list[AnswerOutcome]:
    """One question under every condition: answered, recorded, judged, attributed; its rows and outcomes are
    written in one transaction, so a killed run resumes after the last whole question."""
    caller = sorted(set(plan.groups) | set(q.groups))
    grading = QuestionGrading(judge, run, q, plan.strategy)
    fixed = [Passage(**p) for p in q.extra["passages"]] if "passages" in q.extra else None  # a probe's passages
    outcomes = []
    for cond in plan.conditions:
        t0 = time.perf_counter()
        ans = answerer.answer(q.question, cond, plan.strategy, caller, q.evidence if q.answerable else (), run, q.id,
                              fixed)
        assert ans.row_hash is not None
        r = ans.result
        outcome = grading.grade(cond, ans.text, ans.row_hash, ans.context.evidence_in_context, len(ans.context.passages),
                                r.prompt_tokens, r.completion_tokens, r.latency_ms)
        outcomes.append(replace(outcome, wall_ms=round((time.perf_counter() - t0) * 1000, 1)))
    run.event("question_done", question_id=q.id, outcomes=[asdict(o) for o in outcomes])
    run.flush()
    return outcomes


def evaluate_answers(ws: Workspace, questions_path: Path | None = None, conditions: list[str] | str | None = None,
                     strategy: str = "single", model: str | None = None, groups: list[str] | None = None,
                     limit: int | None = None, progress: Progress | None = None, command: str = "",
                     resume: str | None = None, generator: Generator | None = None,
                     judge_generator: Generator | None = None, adapter: str | None = None) -> dict[str, Any]:
    """Run the evaluation and return its summary (with run_id and every judged answer). With `resume` (a killed
    run's id), continue that run with its own questions, conditions, strategy and model, from the first question
    it did not finish. `adapter`: an adapter trained here, loaded on `model` (default: its base); the judge is always
    a plain model. `generator` / `judge_generator` replace the models named by `model` / eval.judge_model."""
    progress = progress or Progress()
    cfg = ws.config
    point = resume_point(ws, resume) if resume else None
    plan = point.plan if point else Plan.make(questions_path, conditions, strategy, model, groups, limit, adapter)
    gen = generator or load_generator(ws, plan.model, plan.adapter)
    if point is not None and gen.identity.model_sha256 != point.model_sha256:
        raise UsageError(f"model {gen.identity.model} is not the file run {point.run_id} started with")
    same = ws.models.get(cfg.eval.judge_model).name == gen.identity.model and gen.identity.adapter is None
    judge_gen = judge_generator or (gen if same else load_generator(ws, cfg.eval.judge_model))
    judge = AnswerJudge(judge_gen, repeats=cfg.eval.judge_repeats, seed=cfg.llm.seed)
    answerer = Answerer.open(ws, gen, need_index=any(c != "closed-book" for c in plan.conditions))
    outcomes = list(point.done) if point else []
    done_ids = {o.id for o in outcomes}
    todo = [q for q in plan.questions if q.id not in done_ids]
    progress.note(f"{len(plan.questions)} questions x {len(plan.conditions)} conditions ({', '.join(plan.conditions)}), "
                  f"strategy {plan.strategy}, model {gen.identity.model}, judge {judge_gen.identity.model}"
                  + (f"; resuming run {point.run_id}: {len(done_ids)} questions already done" if point else ""), STAGE)
    estimate = _estimate(gen, cfg, answerer, todo, plan)
    if estimate is not None:
        progress.note(str(estimate), STAGE)
    t_start = time.perf_counter()
    first_kind, first = _start_event(plan, point, command, gen, judge_gen)
    with ws.resumed_run(point.run_id) if point else ws.run("eval-answers", command) as run:
        run.event(first_kind, **first)
        if estimate is not None:
            run.event("eval_answers_estimate", **estimate.record())
        run.flush()
        progress.note(f"run {run.run_id}: if it is stopped, `appliance eval answers --resume {run.run_id}` goes on "
                      f"from the first question it did not finish", STAGE)
        progress.start(STAGE, len(plan.questions), "questions", done=len(done_ids))
        for i, q in enumerate(todo, len(done_ids) + 1):
            progress.check()
            mine = _answer_question(run, answerer, judge, plan, q)
            outcomes.extend(mine)
            marks = " ".join(f"{o.condition}:{'ok' if o.verdict == 'correct' else o.failure_kind}" for o in mine)
            progress.advance(STAGE, i, len(plan.questions), "questions", f"{q.id} {marks}")
        order = {q.id: n for n, q in enumerate(plan.questions)}
        outcomes.sort(key=lambda o: (order.get(o.id, len(order)), plan.conditions.index(o.condition)))
        summary = {"strategy": plan.strategy, "model": gen.identity.model, "model_sha256": gen.identity.model_sha256,
                   "adapter": gen.identity.adapter, "adapter_sha256": gen.identity.adapter_sha256,
                   "judge_model": judge_gen.identity.model, "questions_file": str(plan.questions_file),
                   "n_questions": len(plan.questions), "conditions": summarise_outcomes(outcomes, plan.conditions),
                   "synthetic": any(q.extra.get("synthetic") for q in plan.questions),
                   "seconds": round(time.perf_counter() - t_start, 1), "resumed": bool(point),
                   "estimated_seconds": estimate.seconds if estimate else None}
        return finish(ws, run, summary, outcomes)
