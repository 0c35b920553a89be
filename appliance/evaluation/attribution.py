"""Why an answer failed. One kind per judged answer:

- `correct`
- `hallucinated_answer`: answered a question the documents do not answer
- `wrong_refusal`: refused a question the documents answer
- `retrieval_miss`: wrong (or refused) under rag, and the gold evidence was not in the retrieved passages
- `model_limit`: wrong even with the gold evidence in context (oracle wrong; for rag: the oracle answer was wrong
  too), or wrong closed-book (nothing given; the model did not know)
- `context_misuse`: wrong under rag with the evidence in the passages, while the oracle answer was right:
  distracted by the other passages
- `unattributed`: wrong under rag with the evidence in the passages and no oracle run to tell context_misuse from
  model_limit (not guessed: run the oracle condition too)
- `unjudged`: the judge's output did not parse
"""
from __future__ import annotations

from appliance.evaluation.judge import Verdict

FAILURE_KINDS = ("correct", "hallucinated_answer", "wrong_refusal", "retrieval_miss", "model_limit",
                 "context_misuse", "unattributed", "unjudged")


def failure_kind(condition: str, answerable: bool, verdict: Verdict, evidence_in_context: bool | None,
                 oracle_correct: bool | None) -> str:
    """The failure kind of one judged answer (see the module doc); `oracle_correct` is None without an oracle run."""
    if verdict.verdict == "unparseable":
        return "unjudged"
    if verdict.correct:
        return "correct"
    if not answerable:
        return "hallucinated_answer"
    if condition == "rag" and not evidence_in_context:
        return "retrieval_miss"  # wrong or refused: the passages did not hold the answer
    if verdict.refused:
        return "wrong_refusal"
    if condition == "rag":
        if oracle_correct is None:
            return "unattributed"
        return "model_limit" if not oracle_correct else "context_misuse"
    return "model_limit"
