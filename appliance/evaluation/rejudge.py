"""`appliance eval rejudge RUN`: judge the final answers of an earlier `eval answers` run again, with the judge
(and the answer key) as they are now, without generating anything.

The audit store is append-only, so a changed judge or a corrected gold answer cannot rewrite old verdicts. The
re-judgement is a new run (kind `eval-rejudge`) whose judgements point at the old run's answer rows; failures are
attributed again (rag against the re-judged oracle). `compare` takes it like any evaluation run.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audit import AuditStore
from appliance.evaluation.answers import (AnswerOutcome, Progress, find_eval_run, finish, parse_conditions,
                                          record_judgement, summarise_outcomes)
from appliance.evaluation.attribution import failure_kind
from appliance.evaluation.golden import load_questions
from appliance.evaluation.judge import AnswerJudge
from appliance.llm import load_generator
from appliance.workspace import Workspace


def _source(store: AuditStore, prefix: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The run id, its eval_answers_start payload, and its judged final answers in the order they were judged."""
    run_id, _, start = find_eval_run(store, prefix)
    cur = store.con.execute(
        """SELECT j.question_id, j.condition, j.evidence_in_context, a.row_hash, a.output, a.retrieved_json,
                  a.prompt_tokens, a.completion_tokens, a.latency_ms
           FROM judgements j JOIN answers a ON a.row_hash = j.answer_row_hash
           WHERE j.run_id = ? ORDER BY j.seq""", [run_id])
    names = [d[0] for d in cur.description]
    return run_id, start, [dict(zip(names, r)) for r in cur.fetchall()]


def rejudge_run(ws: Workspace, run_prefix: str, questions_path: Path | None = None,
                progress: Progress | None = None, command: str = "") -> dict[str, Any]:
    """Judge every final answer of run `run_prefix` again (against `questions_path`, default the run's own golden
    set); record a new run and return its summary, like `eval answers` does."""
    say = progress or (lambda _msg: None)
    cfg = ws.config
    t_start = time.perf_counter()
    with AuditStore(ws.audit_path) as store:
        source, start, answers = _source(store, run_prefix)
    if not answers:
        raise ValueError(f"run {source} has no judged answers to judge again")
    questions_path = questions_path or Path(start["questions_file"])
    questions_sha = hashlib.sha256(questions_path.read_bytes()).hexdigest()
    questions = {q.id: q for q in load_questions(questions_path)}
    missing = sorted({a["question_id"] for a in answers} - set(questions))
    if missing:
        raise ValueError(f"{questions_path} lacks questions {', '.join(missing)} of run {source}")
    if questions_sha != start["questions_sha256"]:
        say(f"note: {questions_path} differs from the golden set run {source} was judged against")
    judge_gen = load_generator(cfg, cfg.eval.judge_model)
    judge = AnswerJudge(judge_gen, repeats=cfg.eval.judge_repeats, seed=cfg.llm.seed)
    conditions = parse_conditions(start["conditions"])
    answers.sort(key=lambda a: conditions.index(a["condition"]))  # oracle before rag, per question
    order = list(dict.fromkeys(a["question_id"] for a in answers))
    outcomes: list[AnswerOutcome] = []
    with AuditStore(ws.audit_path) as store, store.run("eval-rejudge", command or " ".join(sys.argv), cfg.to_dict(),
                                                        __version__) as run:
        run.event("rejudge_start", of=source, questions_file=str(questions_path), questions_sha256=questions_sha,
                  judge_model=judge_gen.entry.name, judge_model_sha256=judge_gen.entry.sha256, answers=len(answers))
        for qid in order:
            q = questions[qid]
            oracle_correct: bool | None = None
            for a in (a for a in answers if a["question_id"] == qid):
                verdict = judge(q, a["output"])
                kind = failure_kind(a["condition"], q.answerable, verdict, a["evidence_in_context"], oracle_correct)
                if a["condition"] == "oracle":
                    oracle_correct = verdict.correct if verdict.verdict != "unparseable" else None
                record_judgement(run, a["row_hash"], q, a["condition"], start["strategy"], verdict,
                                 a["evidence_in_context"], kind)
                outcomes.append(AnswerOutcome(q.id, q.kind, a["condition"], a["output"], verdict.verdict,
                                              verdict.method, kind, a["evidence_in_context"],
                                              len(json.loads(a["retrieved_json"] or "[]")), a["prompt_tokens"],
                                              a["completion_tokens"], a["latency_ms"], a["latency_ms"]))
            run.flush()
        outcomes.sort(key=lambda o: (order.index(o.id), conditions.index(o.condition)))
        summary = {"strategy": start["strategy"], "model": start["model"], "model_sha256": start["model_sha256"],
                   "judge_model": judge_gen.entry.name, "questions_file": str(questions_path),
                   "n_questions": len(order), "conditions": summarise_outcomes(outcomes, conditions),
                   "seconds": round(time.perf_counter() - t_start, 1), "rejudged": source}
        return finish(ws, run, summary, outcomes)
