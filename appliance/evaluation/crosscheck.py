"""`appliance eval crosscheck RUN`: the judge model asked about answers that the deterministic checks settled, so
the two layers' agreement is measured where both ran.

In `eval answers` the judge model sees only what the checks cannot settle, so the layers never overlap and a record
could only say how many verdicts each settled. Here up to `ladder.judge_crosscheck` check-settled answers of a run
(refusals excepted: the refusal check is the definition of abstaining, and an unanswerable question has no reference
answer to judge against) go to the judge model as well; each pair of verdicts is an event of a run of its own
(kind `eval-crosscheck`), nothing of the source run changes. A judge that often disagrees with the checks where
they are sure is a judge whose own verdicts deserve less trust.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from appliance.audit import AuditStore
from appliance.errors import UsageError
from appliance.evaluation.golden import load_questions
from appliance.evaluation.judge import AnswerJudge
from appliance.evaluation.rejudge import source_answers
from appliance.llm import Generator, load_generator
from appliance.progress import Progress
from appliance.workspace import Workspace

STAGE = "eval crosscheck"
NOT_ASKED = ("judge", "refusal")      # the judge's own verdicts; refusals


def crosscheck_run(ws: Workspace, run_prefix: str, limit: int | None = None, progress: Progress | None = None,
                   command: str = "", judge_generator: Generator | None = None) -> dict[str, Any]:
    """Ask the judge model about the check-settled answers of run `run_prefix` (at most `limit`, default
    ladder.judge_crosscheck, spread over the run in judging order) and record both verdicts of each."""
    progress = progress or Progress()
    limit = ws.config.ladder.judge_crosscheck if limit is None else limit
    t0 = time.perf_counter()
    with AuditStore(ws.audit_path) as store:
        source, start, answers = source_answers(store, run_prefix)
        settled = {j["answer_row_hash"]: (j["method"], j["verdict"]) for j in store.rows("judgements", source)}
    candidates = [a for a in answers if settled[a.row_hash][0] not in NOT_ASKED]
    step = max(1, len(candidates) / limit) if limit else 1
    todo = [candidates[int(i * step)] for i in range(min(limit, len(candidates)))]
    questions = {q.id: q for q in load_questions(Path(start["questions_file"]))}
    missing = sorted({a.question_id for a in todo} - set(questions))
    if missing:
        raise UsageError(f"{start['questions_file']} lacks questions {', '.join(missing)} of run {source}")
    judge_gen = judge_generator or load_generator(ws, ws.config.eval.judge_model)
    judge = AnswerJudge(judge_gen, repeats=ws.config.eval.judge_repeats, seed=ws.config.llm.seed)
    with ws.run("eval-crosscheck", command) as run:
        run.event("crosscheck_start", of=source, judge_model=judge_gen.identity.model,
                  judge_model_sha256=judge_gen.identity.model_sha256, check_settled=len(candidates), asked=len(todo))
        run.flush()
        progress.start(STAGE, len(todo), "answers")
        pairs = []
        for i, a in enumerate(todo, 1):
            method, verdict = settled[a.row_hash]
            v = judge.by_model(questions[a.question_id], a.output)
            pairs.append((method, verdict, v.verdict))
            run.event("crosscheck", of=source, question_id=a.question_id, condition=a.condition,
                      answer_row_hash=a.row_hash, check_method=method, check_verdict=verdict,
                      judge_verdict=v.verdict, judge_reason=v.reason, raw_outputs=v.raw_outputs)
            run.flush()
            progress.advance(STAGE, i, len(todo), "answers", f"{a.question_id} {a.condition}")
        agree = sum(c == j for _, c, j in pairs)
        summary = {"of": source, "run_id": run.run_id, "check_settled": len(candidates), "asked": len(todo),
                   "agree": agree, "agreement": round(agree / len(todo), 4) if todo else None,
                   "by_method": {m: {"asked": sum(p[0] == m for p in pairs),
                                     "agree": sum(p[0] == m and p[1] == p[2] for p in pairs)}
                                 for m in sorted({p[0] for p in pairs})},
                   "judge_unparseable": sum(j == "unparseable" for _, _, j in pairs),
                   "judge_model": judge_gen.identity.model, "seconds": round(time.perf_counter() - t0, 1)}
        run.event("crosscheck_summary", **summary)
    return summary
