"""The decision rules on planted evidence: each verdict is reached by the situation it is meant for, and only by
it. (tests/test_ladder.py plants the same situations in real runs.)"""
from __future__ import annotations

import pytest

from appliance.config import LadderConfig
from appliance.ladder.rules import RULES, VERDICTS, Evidence, decide

CFG = LadderConfig()


def healthy(**change) -> Evidence:
    """A golden set where retrieval works and the model is the problem (what the devset measured)."""
    base = dict(questions=40, answerable=36, gold_flagged=0, recall=0.95, rag_accuracy=0.6, oracle_accuracy=0.7,
                abstention=0.0, rag_failures={"model_limit": 6, "context_misuse": 4, "hallucinated_answer": 4,
                                              "retrieval_miss": 2})
    return Evidence(**(base | change))


def test_a_wrong_answer_key_is_fixed_first() -> None:
    d = decide(healthy(gold_flagged=2, gold_flagged_ids=["q3", "q9"]), CFG)
    assert (d.verdict, d.locus, d.rule) == ("fix the documents or the answer key", "data", "gold-key-flagged")
    assert "q3" in d.because and "2 of 36" in d.because


@pytest.mark.parametrize("recall,failures,rule", [
    (0.55, {"model_limit": 3}, "recall-below-min"),
    (0.9, {"retrieval_miss": 9, "model_limit": 3}, "retrieval-misses-dominate"),
])
def test_broken_retrieval_says_fix_retrieval(recall, failures, rule) -> None:
    d = decide(healthy(recall=recall, rag_failures=failures), CFG)
    assert (d.verdict, d.locus, d.rule) == ("fix retrieval", "retrieval", rule)


def test_a_model_that_fails_even_with_the_gold_passage_gets_a_model_side_verdict() -> None:
    d = decide(healthy(oracle_accuracy=0.1, rag_accuracy=0.08, rag_failures={"model_limit": 30, "retrieval_miss": 1}),
               CFG)
    assert d.locus == "model" and d.rule == "model-side-untested" and "oracle 10%" in d.because


def test_scaling_is_chosen_when_it_recovers_enough_failures() -> None:
    d = decide(healthy(scaling={"best-of-n": 0.6, "self-consistency": 0.2}), CFG)
    assert (d.verdict, d.rule) == ("use inference-time scaling", "scaling-recovers") and "best-of-n" in d.because
    assert decide(healthy(scaling={"best-of-n": 0.3}), CFG).rule == "model-side-untested"


def test_too_few_reviewed_pairs_block_fine_tuning_with_the_reason() -> None:
    better = dict(adapted_delta=0.2, adapted_p=0.001, regressions=[])
    d = decide(healthy(**better, reviewed_pairs=40, trained_on_unreviewed=True), CFG)
    assert d.verdict == "insufficient evidence" and d.rule == "tuned-better-but-unreviewed"
    assert "40 reviewed" in d.because and "review" in d.because
    d = decide(healthy(**better, reviewed_pairs=250, trained_on_unreviewed=False), CFG)
    assert (d.verdict, d.rule) == ("fine-tune", "tuned-better")


def test_an_adapter_that_is_not_better_or_regresses_is_not_recommended() -> None:
    worse = decide(healthy(adapted_delta=-0.3, adapted_p=0.01, regressions=["q1", "q2"], reviewed_pairs=300,
                           trained_on_unreviewed=False), CFG)
    assert (worse.verdict, worse.rule) == ("ship RAG as is", "tuned-not-better") and "q1" in worse.because
    unsure = decide(healthy(adapted_delta=0.05, adapted_p=0.4, reviewed_pairs=300, trained_on_unreviewed=False), CFG)
    assert unsure.rule == "tuned-not-better"
    regressed = decide(healthy(adapted_delta=0.2, adapted_p=0.001, regressions=["q5"], reviewed_pairs=300,
                               trained_on_unreviewed=False), CFG)
    assert regressed.rule == "tuned-not-better"   # ladder.max_regressions = 0


def test_good_rag_ships_and_too_few_questions_decide_nothing() -> None:
    assert decide(healthy(rag_accuracy=0.95, abstention=1.0), CFG).verdict == "ship RAG as is"
    assert decide(healthy(rag_accuracy=0.95, abstention=0.5), CFG).verdict != "ship RAG as is"
    assert decide(healthy(questions=4), CFG).rule == "too-few-questions"


def test_every_rule_can_fire_and_every_verdict_is_reachable() -> None:
    seen = {decide(e, CFG).rule for e in (
        healthy(questions=3), healthy(gold_flagged=1), healthy(recall=0.1), healthy(rag_failures={"retrieval_miss": 5}),
        healthy(rag_accuracy=1.0, abstention=1.0), healthy(scaling={"council": 1.0}),
        healthy(adapted_delta=0.3, adapted_p=0.0, reviewed_pairs=0, trained_on_unreviewed=True),
        healthy(adapted_delta=0.3, adapted_p=0.0, reviewed_pairs=500, trained_on_unreviewed=False),
        healthy(adapted_delta=-0.1, adapted_p=0.5), healthy())}
    assert seen == {r.name for r in RULES}
    assert {r.verdict for r in RULES} == set(VERDICTS)
