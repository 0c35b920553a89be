"""The decision rules: one table, read top to bottom, the first rule whose test holds gives the verdict.

Each rule names where the failure lives (data, retrieval, model, none, or unknown), the verdict, and a sentence
filled with the figures it read. The thresholds are `[ladder]` settings (documented in docs/LADDER.md). The rules
read an `Evidence` (what the ladder measured); a figure the ladder did not measure is None, and a rule that needs it
does not fire on a guess.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.config import LadderConfig

VERDICTS = ("fix the documents or the answer key", "fix retrieval", "use inference-time scaling", "fine-tune",
            "ship RAG as is", "insufficient evidence")
MODEL_SIDE = ("model_limit", "context_misuse", "wrong_refusal", "hallucinated_answer")


@dataclass
class Evidence:
    """What the rules read (None: not measured)."""

    questions: int                                   # golden questions asked
    answerable: int
    gold_flagged: int | None = None                  # answers the gold check flagged
    gold_flagged_ids: list[str] = field(default_factory=list)
    recall: float | None = None                      # gold-evidence recall@k of the retrieval eval
    rag_accuracy: float | None = None                # answerable questions right under rag
    oracle_accuracy: float | None = None             # answerable questions right with the gold passage
    abstention: float | None = None                  # unanswerable questions refused under rag (None: none asked)
    rag_failures: dict[str, int] = field(default_factory=dict)   # failure kind -> count under rag
    scaling: dict[str, float] = field(default_factory=dict)      # strategy -> share of the failing questions it fixed
    reviewed_pairs: int | None = None                # approved or edited synthetic pairs
    trained_on_unreviewed: bool | None = None        # the adapter's dataset took pairs nobody reviewed
    adapted_delta: float | None = None               # adapted minus base accuracy under rag (all questions)
    adapted_p: float | None = None                   # McNemar p of that difference
    regressions: list[str] = field(default_factory=list)         # right before, wrong after adaptation (rag)
    alpha: float = 0.05                              # significance level (eval.alpha)

    @property
    def failing(self) -> int:
        return sum(n for k, n in self.rag_failures.items() if k != "unjudged")

    @property
    def model_side(self) -> int:
        return sum(self.rag_failures.get(k, 0) for k in MODEL_SIDE)


@dataclass(frozen=True)
class Rule:
    """One row of the table: its name, where it says the failure lives, the verdict, when it fires, why (a format
    string over the Evidence's fields and the settings)."""

    name: str
    locus: str                                       # data | retrieval | model | none | unknown
    verdict: str
    fires: Callable[[Evidence, LadderConfig], bool]
    because: Callable[[Evidence, LadderConfig], str]


def _pct(x: float | None) -> str:
    return "not measured" if x is None else f"{x:.0%}"


def _best(e: Evidence) -> tuple[str, float]:
    return max(e.scaling.items(), key=lambda kv: kv[1]) if e.scaling else ("none", 0.0)


def _tuned_better(e: Evidence, c: LadderConfig) -> bool:
    return (e.adapted_delta is not None and e.adapted_delta > 0 and e.adapted_p is not None and e.adapted_p < e.alpha
            and len(e.regressions) <= c.max_regressions)


RULES: tuple[Rule, ...] = (
    Rule("too-few-questions", "unknown", "insufficient evidence",
         lambda e, c: e.questions < c.min_questions,
         lambda e, c: f"{e.questions} golden questions, fewer than ladder.min_questions = {c.min_questions}: no "
                      "figure here would be trustworthy"),
    Rule("gold-key-flagged", "data", "fix the documents or the answer key",
         lambda e, c: bool(e.gold_flagged),
         lambda e, c: f"the gold check flagged {e.gold_flagged} of {e.answerable} answers "
                      f"({', '.join(e.gold_flagged_ids[:10])}): their evidence does not support the key, so every "
                      "accuracy figure on them is in doubt"),
    Rule("recall-below-min", "retrieval", "fix retrieval",
         lambda e, c: e.recall is not None and e.recall < c.recall_min,
         lambda e, c: f"gold-evidence recall {_pct(e.recall)} is below {c.recall_min:.0%}: the model cannot use "
                      "evidence it is not given (fix the index and chunking first)"),
    Rule("retrieval-misses-dominate", "retrieval", "fix retrieval",
         lambda e, c: e.failing > 0 and e.rag_failures.get("retrieval_miss", 0) * 2 > e.failing,
         lambda e, c: f"{e.rag_failures.get('retrieval_miss', 0)} of {e.failing} rag failures are retrieval misses"),
    Rule("rag-meets-target", "none", "ship RAG as is",
         lambda e, c: e.rag_accuracy is not None and e.rag_accuracy >= c.target_accuracy
         and (e.abstention is None or e.abstention >= c.target_accuracy),
         lambda e, c: f"rag answers {_pct(e.rag_accuracy)} of answerable questions and refuses "
                      f"{_pct(e.abstention)} of unanswerable ones, at or above {c.target_accuracy:.0%}"),
    Rule("scaling-recovers", "model", "use inference-time scaling",
         lambda e, c: _best(e)[1] >= c.scaling_recovered_min,
         lambda e, c: f"{_best(e)[0]} answers {_best(e)[1]:.0%} of the {e.failing} failing questions right "
                      f"(at least {c.scaling_recovered_min:.0%}), without touching the weights"),
    Rule("tuned-better-but-unreviewed", "model", "insufficient evidence",
         lambda e, c: _tuned_better(e, c) and (bool(e.trained_on_unreviewed)
                                                      or (e.reviewed_pairs or 0) < c.reviewed_pairs_min),
         lambda e, c: f"the adapter is better under rag (+{e.adapted_delta:.0%}, p {e.adapted_p:.3f}) but was trained "
                      f"on pairs nobody reviewed ({e.reviewed_pairs or 0} reviewed, at least {c.reviewed_pairs_min} "
                      "needed): review the pairs (`appliance sdg review`) and rerun the ladder, which retrains on them"),
    Rule("tuned-better", "model", "fine-tune",
         lambda e, c: _tuned_better(e, c),
         lambda e, c: f"the adapter trained on {e.reviewed_pairs} reviewed pairs is better under rag "
                      f"(+{e.adapted_delta:.0%}, McNemar p {e.adapted_p:.3f}) with {len(e.regressions)} regressions"),
    Rule("tuned-not-better", "model", "ship RAG as is",
         lambda e, c: e.adapted_delta is not None,
         lambda e, c: f"the failures are model-side ({e.model_side} of {e.failing}; oracle {_pct(e.oracle_accuracy)})"
                      f" but the adapter is not shown to be better: {e.adapted_delta:+.0%} under rag (McNemar p "
                      f"{'n/a' if e.adapted_p is None else f'{e.adapted_p:.3f}'}, needs < {e.alpha}), "
                      f"{len(e.regressions)} regressions{' (' + ', '.join(e.regressions[:8]) + ')' if e.regressions else ''}"
                      f" (at most {c.max_regressions} tolerated); keep RAG with the base model and revisit with more or "
                      "better data"),
    Rule("model-side-untested", "model", "insufficient evidence",
         lambda e, c: True,
         lambda e, c: f"the failures are model-side ({e.model_side} of {e.failing} rag failures; oracle "
                      f"{_pct(e.oracle_accuracy)}), and no adapter was measured against the base yet: run the "
                      "ladder through its adapted re-evaluation"),
)


@dataclass(frozen=True)
class Decision:
    verdict: str
    locus: str
    rule: str
    because: str


def decide(e: Evidence, cfg: LadderConfig) -> Decision:
    """The first rule of RULES that fires."""
    for rule in RULES:
        if rule.fires(e, cfg):
            return Decision(rule.verdict, rule.locus, rule.name, rule.because(e, cfg))
    raise AssertionError("the last rule always fires")
