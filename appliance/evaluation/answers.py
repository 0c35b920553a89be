"""`appliance eval answers`: answer every golden question under each condition with a strategy, judge each answer,
attribute each failure, and put all of it on the record.

Per question the conditions run in the order closed-book, oracle, rag, so the rag failure can be told apart:
evidence not retrieved (retrieval_miss), evidence retrieved but the oracle answer right (context_misuse), or the
model wrong even with the gold chunk (model_limit). One model stays loaded for the whole run; when the judge is the
same model it is shared.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audit import AuditStore, Run, config_sha256
from appliance.evaluation.attribution import failure_kind
from appliance.evaluation.contexts import (CONDITIONS, Context, budget, covers_evidence, oracle_passages,
                                           retrieved_context)
from appliance.evaluation.estimate import Estimate, estimate_run, measure_speed
from appliance.evaluation.golden import Question, load_questions
from appliance.evaluation.judge import AnswerJudge, Verdict
from appliance.evaluation.report import record_reports, run_report
from appliance.evaluation.strategies import STRATEGIES, StrategyResult, StrategyRunner
from appliance.llm import LlamaCppGenerator, load_generator
from appliance.llm.prompts import CLOSED_BOOK, CONTEXT
from appliance.models import resolve_name
from appliance.workspace import Workspace

Progress = Callable[[str], None]


@dataclass(frozen=True)
class AnswerOutcome:
    """One judged answer of the run (what the summary and the report show per question)."""

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
    wall_ms: float             # context, generation and judging


def parse_conditions(value: str | list[str] | None) -> list[str]:
    """Conditions in run order (closed-book, oracle, rag), refusing unknown names."""
    names = value.split(",") if isinstance(value, str) else list(value or CONDITIONS)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise ValueError(f"unknown condition(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(CONDITIONS)}")
    return [c for c in CONDITIONS if c in names]


class ContextBuilder:
    """Builds the passages of each condition for a question (index opened once)."""

    def __init__(self, ws: Workspace, generator: LlamaCppGenerator, need_index: bool,
                 empty_hint: str = " (oracle and rag need it)") -> None:
        self.cfg = ws.config
        self.count = generator.count_tokens
        self.retriever = None
        if need_index:
            from appliance.retrieval import Retriever

            self.retriever = Retriever(ws.config, ws.index_dir)
            self.retriever.require_chunks(empty_hint)

    def build(self, q: Question, condition: str, groups: list[str]) -> tuple[Context, Any]:
        """The context, and the retrieval result for rag (None otherwise)."""
        if condition == "closed-book":
            return Context(condition), None
        assert self.retriever is not None
        if condition == "oracle":
            passages, missing = oracle_passages(q, self.retriever.visible(groups)) if q.answerable else ([], [])
            kept, dropped = budget(passages, self.cfg.eval.context_max_tokens, self.count)
            covered = covers_evidence(q, "\n".join(p.text for p in kept))
            return Context(condition, kept, covered, dropped, missing), None
        return self.rag(q.question, groups, q)

    def rag(self, query: str, groups: list[str], q: Question | None = None) -> tuple[Context, Any]:
        """The retrieved passages for `query` as the model sees them, and the retrieval result; with `q`, whether
        they hold its gold evidence."""
        assert self.retriever is not None
        e = self.cfg.eval
        result = self.retriever.search(query, k=e.context_k, groups=groups)
        return retrieved_context(result, e.context_max_tokens, self.count, q, e.context_order), result

    def sample_passages(self, groups: list[str], n: int = 50) -> list[str]:
        """Texts of up to `n` chunks visible to `groups`, spread over the index (for estimates)."""
        if self.retriever is None:
            return []
        visible = self.retriever.visible(groups)
        step = max(len(visible) // n, 1)
        return [c["text"] for c, _ in visible[::step][:n]]


def record_answer(run: Run, question_id: str | None, question: str, condition: str, strategy: str,
                  gen: LlamaCppGenerator, ctx: Context, result: StrategyResult) -> str:
    """Every generation of the strategy as an answers row ("strategy/role"), then the final answer row
    (strategy name alone) carrying the totals and how it was chosen. Returns the final row's hash."""
    e = gen.entry
    common = dict(question_id=question_id, question=question, condition=condition, model_name=e.name,
                  model_sha256=e.sha256, adapter_id=None, adapter_sha256=None,
                  retrieved_json=[p.record() for p in ctx.passages])
    step_hashes = []
    if strategy != "single":
        for s in result.steps:
            step_hashes.append(run.append(
                "answers", **common, strategy=f"{strategy}/{s.role}", template_id=s.template_id, prompt=s.gen.prompt,
                prompt_sha256=hashlib.sha256(s.gen.prompt.encode()).hexdigest(),
                params_json=asdict(s.params) | {"backend": gen.backend}, seed=s.params.seed, output=s.gen.text,
                finish_reason=s.gen.finish_reason, prompt_tokens=s.gen.prompt_tokens,
                completion_tokens=s.gen.completion_tokens, latency_ms=s.gen.latency_ms))
    last = result.steps[-1]
    final_step = next((s for s in result.steps if s.gen.text == result.answer), last)
    return run.append(
        "answers", **common, strategy=strategy, template_id=final_step.template_id, prompt=final_step.gen.prompt,
        prompt_sha256=hashlib.sha256(final_step.gen.prompt.encode()).hexdigest(),
        params_json=asdict(final_step.params) | {"backend": gen.backend, "n_ctx": gen.cfg.n_ctx,
                                                  "steps": step_hashes, "strategy_details": result.details,
                                                  "dropped_passages": ctx.dropped,
                                                  "oracle_missing_quotes": ctx.missing_quotes},
        seed=final_step.params.seed, output=result.answer, finish_reason=final_step.gen.finish_reason,
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, latency_ms=result.latency_ms)


def record_judgement(run: Run, answer_hash: str, q: Question, condition: str, strategy: str, verdict: Verdict,
                     evidence_in_context: bool | None, kind: str) -> str:
    """The judgements row of one final answer (`answer_hash`: its answers row, possibly of an earlier run)."""
    return run.append("judgements", answer_row_hash=answer_hash, question_id=q.id, kind=q.kind, condition=condition,
                      strategy=strategy, verdict=verdict.verdict, method=verdict.method, reason=verdict.reason,
                      refused=verdict.refused, judge_model=verdict.judge_model,
                      judge_model_sha256=verdict.judge_model_sha256, judge_template_id=verdict.judge_template_id,
                      raw_outputs_json=verdict.raw_outputs, agreement=verdict.agreement,
                      evidence_in_context=evidence_in_context, failure_kind=kind)


def summarise_outcomes(outcomes: list[AnswerOutcome], conditions: list[str]) -> dict[str, Any]:
    """Accuracy, failures and cost per condition (and accuracy by question kind)."""
    out = {}
    for cond in conditions:
        rows = [o for o in outcomes if o.condition == cond]
        n = len(rows)
        correct = sum(o.verdict == "correct" for o in rows)
        unans = [o for o in rows if o.kind == "unanswerable"]
        kinds = sorted({o.kind for o in rows})
        out[cond] = {
            "n": n, "correct": correct, "accuracy": round(correct / n, 4) if n else None,
            "answerable_accuracy": _share([o for o in rows if o.kind != "unanswerable"]),
            "unanswerable_refused": f"{sum(o.verdict == 'correct' for o in unans)}/{len(unans)}",
            "by_kind": {k: {"n": sum(o.kind == k for o in rows), "accuracy": _share([o for o in rows if o.kind == k])}
                        for k in kinds},
            "failures": {k: v for k, v in Counter(o.failure_kind for o in rows).items() if k != "correct"},
            "unparseable": sum(o.verdict == "unparseable" for o in rows),
            "judged_by": dict(Counter(o.method for o in rows)),
            "prompt_tokens_mean": round(sum(o.prompt_tokens for o in rows) / n, 1) if n else None,
            "generation_seconds_per_question": round(sum(o.latency_ms for o in rows) / n / 1000, 2) if n else None,
            "seconds_per_question": round(sum(o.wall_ms for o in rows) / n / 1000, 2) if n else None,
        }
    return out


def _share(rows: list[AnswerOutcome]) -> float | None:
    return round(sum(o.verdict == "correct" for o in rows) / len(rows), 4) if rows else None


@dataclass(frozen=True)
class ResumePoint:
    """What a killed run was asked to do, and the questions it finished (each written whole, with its outcomes)."""

    run_id: str
    start: dict[str, Any]
    done: list[AnswerOutcome]


def find_eval_run(store: AuditStore, run_prefix: str) -> tuple[str, str, dict[str, Any]]:
    """The `eval answers` run named by a unique prefix: its id, its config hash and what it was asked to do (its
    eval_answers_start event)."""
    rows = store.con.execute(
        """SELECT r.run_id, r.config_sha256, e.payload_json FROM runs r
           JOIN events e ON e.run_id = r.run_id AND e.kind = 'eval_answers_start'
           WHERE r.run_id LIKE ? || '%' AND r.kind = 'eval-answers'""", [run_prefix]).fetchall()
    if len(rows) != 1:
        raise ValueError(f"run {run_prefix!r}: " + ("no `eval answers` run with that id" if not rows
                                                     else "ambiguous prefix"))
    run_id, cfg_sha, start_json = rows[0]
    return run_id, cfg_sha, json.loads(start_json)


def resume_point(ws: Workspace, run_prefix: str) -> ResumePoint:
    """The unclosed `eval answers` run named by `run_prefix`, refused if it ended, is still running on this host,
    or was made with another configuration."""
    with AuditStore(ws.audit_path) as store:
        run_id, cfg_sha, start = find_eval_run(store, run_prefix)
        ended = store.closed(run_id)
        done_rows = store.con.execute("SELECT payload_json FROM events WHERE run_id = ? AND kind = 'question_done' "
                                      "ORDER BY seq", [run_id]).fetchall()
        (last_json,) = store.con.execute(
            "SELECT payload_json FROM events WHERE run_id = ? AND kind IN ('eval_answers_start', 'run_resumed') "
            "ORDER BY seq DESC LIMIT 1", [run_id]).fetchone()
    last = json.loads(last_json)  # the process that worked on the run last
    if ended:
        raise ValueError(f"run {run_id} finished (or failed and was closed); only a killed run can be resumed")
    if last.get("host") == socket.gethostname() and _alive(last.get("pid")):
        raise ValueError(f"run {run_id} is still running (pid {last['pid']})")
    if cfg_sha != config_sha256(ws.config.to_dict()):
        raise ValueError(f"run {run_id} was made with another configuration; resume it with the same config.toml "
                         f"and --set options")
    done = [AnswerOutcome(**o) for (payload,) in done_rows for o in json.loads(payload)["outcomes"]]
    return ResumePoint(run_id, start, done)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _estimate(gen: LlamaCppGenerator, cfg: Any, builder: ContextBuilder, questions: list[Question],
              conditions: list[str], strategy: str, groups: list[str]) -> Estimate | None:
    """The run's expected duration, from a speed measured now on a prompt like the run's own."""
    if not questions:
        return None
    texts = builder.sample_passages(sorted(set(groups) | set(questions[0].groups)))
    chunk_tokens = sum(map(gen.count_tokens, texts)) / len(texts) if texts else 0.0
    prompt = (gen.render(CONTEXT, question=questions[0].question, context="\n\n".join(texts[:cfg.eval.context_k]))[0]
              if texts else gen.render(CLOSED_BOOK, question=questions[0].question)[0])
    return estimate_run(gen, cfg, questions, conditions, strategy, chunk_tokens, measure_speed(gen, prompt))


def evaluate_answers(ws: Workspace, questions_path: Path | None, conditions: list[str] | str | None = None,
                     strategy: str = "single", model: str | None = None, groups: list[str] | None = None,
                     limit: int | None = None, progress: Progress | None = None, command: str = "",
                     resume: str | None = None) -> dict[str, Any]:
    """Run the evaluation and return its summary (with run_id and every judged answer). With `resume` (a killed
    run's id), continue that run with its own questions, conditions, strategy and model, from the first question
    it did not finish."""
    point = resume_point(ws, resume) if resume else None
    if point is not None:
        start = point.start
        questions_path, conditions, strategy = Path(start["questions_file"]), start["conditions"], start["strategy"]
        model, groups, limit = start["model"], start.get("groups"), start["n_questions"]
    if questions_path is None:
        raise ValueError("give --questions FILE (or --resume RUN_ID)")
    conditions = parse_conditions(conditions)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (choose {', '.join(STRATEGIES)})")
    questions_sha = hashlib.sha256(questions_path.read_bytes()).hexdigest()
    if point is not None and questions_sha != point.start["questions_sha256"]:
        raise ValueError(f"{questions_path} changed since run {point.run_id} started; it cannot be resumed")
    questions = load_questions(questions_path)[: limit or None]
    say = progress or (lambda _msg: None)
    cfg = ws.config
    generator = load_generator(cfg, model)
    judge_name = resolve_name(cfg.eval.judge_model, cfg.models_dir)
    judge_gen = generator if judge_name == generator.entry.name else load_generator(cfg, judge_name)
    judge = AnswerJudge(judge_gen, repeats=cfg.eval.judge_repeats, seed=cfg.llm.seed)
    if point is not None and generator.entry.sha256 != point.start["model_sha256"]:
        raise ValueError(f"model {generator.entry.name} is not the file run {point.run_id} started with")
    runner = StrategyRunner(generator, cfg)
    builder = ContextBuilder(ws, generator, need_index=any(c != "closed-book" for c in conditions))
    outcomes: list[AnswerOutcome] = list(point.done) if point else []
    done_ids = {o.id for o in outcomes}
    say(f"{len(questions)} questions x {len(conditions)} conditions ({', '.join(conditions)}), strategy {strategy}, "
        f"model {generator.entry.name}, judge {judge_gen.entry.name}"
        + (f"; resuming run {point.run_id}: {len(done_ids)} questions already done" if point else ""))
    todo = [q for q in questions if q.id not in done_ids]
    estimate = _estimate(generator, cfg, builder, todo, conditions, strategy, groups or [])
    if estimate is not None:
        say(str(estimate))
    t_start = time.perf_counter()
    store = AuditStore(ws.audit_path)
    opened = (store.resumed(point.run_id) if point else
              store.run("eval-answers", command or " ".join(sys.argv), cfg.to_dict(), __version__))
    with store, opened as run:
        if point is None:
            run.event("eval_answers_start", questions_file=str(questions_path), questions_sha256=questions_sha,
                      conditions=conditions, strategy=strategy, model=generator.entry.name,
                      model_sha256=generator.entry.sha256, judge_model=judge_gen.entry.name,
                      n_questions=len(questions), groups=groups or [], pid=os.getpid(), host=socket.gethostname())
        else:
            run.event("run_resumed", command=command or " ".join(sys.argv), pid=os.getpid(),
                      host=socket.gethostname(), questions_done=sorted(done_ids))
        if estimate is not None:
            run.event("eval_answers_estimate", **estimate.record())
        run.flush()
        say(f"run {run.run_id}: if it is stopped, `appliance eval answers --resume {run.run_id}` goes on from "
            f"the first question it did not finish")
        for i, q in enumerate(todo, 1):
            caller = sorted(set(groups or []) | set(q.groups))
            oracle_correct: bool | None = None
            mine: list[AnswerOutcome] = []
            for cond in conditions:
                t_cond = time.perf_counter()
                ctx, retrieval = builder.build(q, cond, caller)
                if retrieval is not None:
                    run.append("retrievals", question_id=q.id, query=q.question, mode=retrieval.mode, k=retrieval.k,
                               groups_json=caller, rerank=retrieval.rerank,
                               hits_json=[p.record() for p in ctx.passages],
                               evidence_found=ctx.evidence_in_context, evidence_rank=None,
                               latency_ms=retrieval.latency_ms)
                template = CLOSED_BOOK if cond == "closed-book" else CONTEXT
                result = runner.run(strategy, template, q.question, ctx.render() if cond != "closed-book" else "")
                answer_hash = record_answer(run, q.id, q.question, cond, strategy, generator, ctx, result)
                verdict: Verdict = judge(q, result.answer)
                kind = failure_kind(cond, q.answerable, verdict, ctx.evidence_in_context, oracle_correct)
                if cond == "oracle":
                    oracle_correct = verdict.correct if verdict.verdict != "unparseable" else None
                record_judgement(run, answer_hash, q, cond, strategy, verdict, ctx.evidence_in_context, kind)
                mine.append(AnswerOutcome(q.id, q.kind, cond, result.answer, verdict.verdict, verdict.method, kind,
                                          ctx.evidence_in_context, len(ctx.passages), result.prompt_tokens,
                                          result.completion_tokens, round(result.latency_ms, 1),
                                          round((time.perf_counter() - t_cond) * 1000, 1)))
            # the question's rows and its outcomes are written in one transaction: a killed run resumes after it
            run.event("question_done", question_id=q.id, outcomes=[asdict(o) for o in mine])
            run.flush()
            outcomes.extend(mine)
            elapsed = time.perf_counter() - t_start
            eta = elapsed / i * (len(todo) - i)
            marks = " ".join(f"{o.condition}:{'ok' if o.verdict == 'correct' else o.failure_kind}" for o in mine)
            say(f"[{len(done_ids) + i}/{len(questions)}] {q.id} {marks}  ({elapsed:.0f} s, about {eta:.0f} s left)")
        order = {q.id: n for n, q in enumerate(questions)}
        outcomes.sort(key=lambda o: (order.get(o.id, len(order)), conditions.index(o.condition)))
        summary = {"strategy": strategy, "model": generator.entry.name, "model_sha256": generator.entry.sha256,
                   "judge_model": judge_gen.entry.name, "questions_file": str(questions_path),
                   "n_questions": len(questions), "conditions": summarise_outcomes(outcomes, conditions),
                   "seconds": round(time.perf_counter() - t_start, 1), "resumed": bool(point),
                   "estimated_seconds": estimate.seconds if estimate else None}
        return finish(ws, run, summary, outcomes)


def finish(ws: Workspace, run: Run, summary: dict[str, Any], outcomes: list[AnswerOutcome]) -> dict[str, Any]:
    """Record the run's summary, write its reports (recorded with their sha256) and return the summary with the
    run id, every judged answer and the report paths."""
    run.event("eval_answers_summary", **summary)
    summary["run_id"] = run.run_id
    summary["questions"] = [asdict(o) for o in outcomes]
    record_reports(run, run_report(ws, summary), summary)
    return summary
