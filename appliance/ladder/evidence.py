"""Every figure of a decision record, each read from the audit store by one SQL statement that the record prints
beside it, so an auditor can run it (`appliance audit sql`) and get the same number from the same rows.

`collect()` turns the ladder's rung outputs (run ids) into figures, and the figures into the `Evidence` the rules
read.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import duckdb

from appliance.choices import CONDITIONS
from appliance.config import Config
from appliance.evaluation.attribution import FAILURE_KINDS
from appliance.evaluation.stats import wilson
from appliance.ladder.rules import Evidence

_ID = re.compile(r"^[0-9a-zA-Z_.:-]+$")
CORRECT = "avg(CASE WHEN verdict = 'correct' THEN 1.0 ELSE 0.0 END)"


@dataclass(frozen=True)
class Figure:
    """A number in the record: its id (F1, F2, ...), what it is, its value, the statement that computes it and the
    runs whose rows it rests on."""

    id: str
    key: str
    label: str
    value: Any
    sql: str
    runs: tuple[str, ...]

    def shown(self) -> str:
        v = self.value
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lit(value: str) -> str:
    """A run id or name as an SQL literal (ids are checked, never free text)."""
    if not _ID.match(value):
        raise ValueError(f"not an id: {value!r}")
    return f"'{value}'"


class Figures:
    """Figures read one statement at a time from an open (read-only) connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.all: dict[str, Figure] = {}

    def add(self, key: str, label: str, sql: str, *runs: str) -> Any:
        row = self.con.execute(sql).fetchone()
        value = row[0] if row else None
        if isinstance(value, Decimal):
            value = float(value)
        if isinstance(value, float):
            value = round(value, 4)
        self.all[key] = Figure(f"F{len(self.all) + 1}", key, label, value, " ".join(sql.split()), tuple(runs))
        return value

    def get(self, key: str) -> Any:
        f = self.all.get(key)
        return None if f is None else f.value


# Figures of one condition of an evaluation run: (name, label, SQL select list and filter). {j} is the run's
# judgements of that condition, {a} its answers.
ANSWERABLE, UNANSWERABLE = "AND kind <> 'unanswerable'", "AND kind = 'unanswerable'"
RIGHT = "count(*) FILTER (WHERE verdict = 'correct')"
EVAL_FIGURES = (
    ("accuracy", "answerable questions right", f"{CORRECT} {{j}} {ANSWERABLE}"),
    ("answerable", "answerable questions", f"count(*) {{j}} {ANSWERABLE}"),
    ("right", "answerable questions answered right", f"{RIGHT} {{j}} {ANSWERABLE}"),
    ("abstained", "unanswerable questions refused", f"{RIGHT} {{j}} {UNANSWERABLE}"),
    ("unanswerable", "unanswerable questions", f"count(*) {{j}} {UNANSWERABLE}"),
    *((f"fail.{k}", k, f"count(*) {{j}} AND failure_kind = '{k}'") for k in FAILURE_KINDS[1:]),
    ("by_judge", "verdicts settled by the judge model", "count(*) {j} AND method = 'judge'"),
    ("by_checks", "verdicts settled by the deterministic checks", "count(*) {j} AND method <> 'judge'"),
    ("prompt_tokens", "prompt tokens per answer (mean)", "avg(prompt_tokens) {a}"),
    ("completion_tokens", "completion tokens per answer (mean)", "avg(completion_tokens) {a}"),
    ("latency_s", "generation seconds per answer (mean)", "avg(latency_ms) / 1000 {a}"),
    ("tokens_per_s", "generated tokens per second",
     "sum(completion_tokens) * 1000.0 / nullif(sum(latency_ms), 0) {a}"),
)


def eval_figures(f: Figures, prefix: str, run_id: str, conditions: tuple[str, ...]) -> None:
    """Accuracy, abstention, failure kinds, who settled the verdicts, tokens and latency per condition of a run."""
    r = _lit(run_id)
    for c in conditions:
        j = f"FROM judgements WHERE run_id = {r} AND condition = '{c}'"
        if not f.add(f"{prefix}.{c}.n", f"{prefix} {c}: answers judged", f"SELECT count(*) {j}", run_id):
            continue
        a = f"FROM answers WHERE run_id = {r} AND condition = '{c}'"
        for name, label, select in EVAL_FIGURES:
            f.add(f"{prefix}.{c}.{name}", f"{prefix} {c}: {label}", "SELECT " + select.format(j=j, a=a), run_id)


def collect(con: duckdb.DuckDBPyConnection, out: dict[str, dict[str, Any]], models: list[str], cfg: Config
            ) -> tuple[Figures, Evidence]:
    """The record's figures from the ladder's rung outputs, and the evidence the rules read from them."""
    f = Figures(con)
    primary = models[0]
    gold = out.get("gold")
    flagged_ids: list[str] = []
    if gold:
        g = _lit(gold["run_id"])
        f.add("gold.n", "gold check: answers checked", f"SELECT count(*) FROM gold_findings WHERE run_id = {g}",
              gold["run_id"])
        f.add("gold.flagged", "gold check: answers flagged",
              f"SELECT count(*) FROM gold_findings WHERE run_id = {g} AND status <> 'ok'", gold["run_id"])
        ids = f.add("gold.flagged_ids", "gold check: flagged questions",
                    f"SELECT string_agg(question_id, ' ' ORDER BY question_id) FROM gold_findings WHERE run_id = {g} "
                    "AND status <> 'ok'", gold["run_id"])
        flagged_ids = ids.split() if ids else []
        f.add("gold.noted_ids", "gold check: keys with a warning (evidence incomplete) or an unchecked absence claim",
              f"SELECT string_agg(question_id, ' ' ORDER BY question_id) FROM gold_findings WHERE run_id = {g} "
              "AND json_array_length(json_extract(checks_json, '$.notes')) > 0", gold["run_id"])
    if out.get("retrieval"):
        rid = out["retrieval"]["run_id"]
        f.add("retrieval.recall", f"gold-evidence recall@{out['retrieval']['k']}",
              f"SELECT avg(CASE WHEN evidence_found THEN 1.0 ELSE 0.0 END) FROM retrievals WHERE run_id = {_lit(rid)}",
              rid)
        f.add("retrieval.n", "retrieval: answerable questions searched",
              f"SELECT count(*) FROM retrievals WHERE run_id = {_lit(rid)}", rid)
    for m in models:
        if f"answers:{m}" in out:
            eval_figures(f, m, out[f"answers:{m}"]["run_id"], CONDITIONS)
    if out.get("crosscheck"):
        x = out["crosscheck"]["run_id"]
        w = f"FROM events WHERE run_id = {_lit(x)} AND kind = 'crosscheck'"
        f.add("crosscheck.n", "check-settled answers the judge model was asked about too", f"SELECT count(*) {w}", x)
        f.add("crosscheck.agreement", "share of them where the judge model's verdict is the checks' verdict",
              "SELECT avg(CASE WHEN json_extract_string(payload_json, '$.judge_verdict') = json_extract_string("
              f"payload_json, '$.check_verdict') THEN 1.0 ELSE 0.0 END) {w}", x)
        f.add("crosscheck.disagree", "questions (condition) where they disagree",
              "SELECT string_agg(json_extract_string(payload_json, '$.question_id') || ' (' || json_extract_string("
              "payload_json, '$.condition') || ')', ' ' ORDER BY seq) " + w + " AND json_extract_string(payload_json,"
              " '$.judge_verdict') <> json_extract_string(payload_json, '$.check_verdict')", x)
    scaling: dict[str, float] = {}
    for label, o in out.items():
        if label.startswith("scaling:") and o.get("run_id"):
            s = label.split(":", 1)[1]
            w = f"FROM judgements WHERE run_id = {_lit(o['run_id'])} AND condition = 'rag'"
            f.add(f"scaling.{s}.n", f"{s}: failing questions asked again", f"SELECT count(*) {w}", o["run_id"])
            scaling[s] = f.add(f"scaling.{s}.recovered", f"{s}: share of the failing questions now right",
                               f"SELECT {CORRECT} {w}", o["run_id"])
            f.add(f"scaling.{s}.latency_s", f"{s}: generation seconds per answer (mean)",
                  f"SELECT avg(latency_ms) / 1000 FROM answers WHERE run_id = {_lit(o['run_id'])}", o["run_id"])
    if out.get("sdg"):
        sid = out["sdg"]["run_id"]
        f.add("sdg.candidates", "synthetic pairs written",
              f"SELECT count(DISTINCT pair_id) FROM sdg_pairs WHERE run_id = {_lit(sid)}", sid)
        f.add("sdg.kept", "synthetic pairs passing every filter",
              f"SELECT count(DISTINCT pair_id) FROM v_sdg_pairs WHERE run_id = {_lit(sid)} AND passed", sid)
        f.add("sdg.documents", "documents with a passing pair",
              f"SELECT count(DISTINCT file_name) FROM v_sdg_pairs WHERE run_id = {_lit(sid)} AND passed", sid)
    if out.get("dataset"):
        d = out["dataset"]
        w = f"FROM datasets WHERE dataset_id = {_lit(d['dataset_id'])} AND run_id = {_lit(d['run_id'])}"
        f.add("dataset.reviewed", "pairs in the dataset that a person approved or edited",
              f"SELECT CAST(json_extract(card_json, '$.pairs.approved_or_edited') AS BIGINT) {w}", d["run_id"])
        f.add("dataset.unreviewed", "pairs in the dataset nobody reviewed",
              f"SELECT CAST(json_extract(card_json, '$.pairs.never_reviewed') AS BIGINT) {w}", d["run_id"])
        f.add("dataset.reviewed_only", "dataset made from reviewed pairs only", f"SELECT reviewed_only {w}", d["run_id"])
        f.add("dataset.train", "training examples", f"SELECT n_train {w}", d["run_id"])
        f.add("dataset.documents", "documents with training examples",
              f"SELECT CAST(json_extract(card_json, '$.coverage.documents_with_examples') AS BIGINT) {w}", d["run_id"])
        f.add("dataset.golden_seen", "golden questions whose evidence is among the training sources",
              f"SELECT json_array_length(json_extract(card_json, '$.golden_overlap.evidence_seen_in_training')) {w}",
              d["run_id"])
    if out.get("train"):
        t = out["train"]["run_id"]
        w = f"FROM events WHERE run_id = {_lit(t)} AND kind = 'train_summary'"
        f.add("train.seconds", "training seconds", f"SELECT CAST(json_extract(payload_json, '$.seconds') AS DOUBLE) {w}",
              t)
        f.add("train.steps", "optimizer updates", f"SELECT CAST(json_extract(payload_json, '$.steps') AS BIGINT) {w}", t)
        f.add("train.eval_loss", "best validation loss",
              f"SELECT min(loss) FROM train_steps WHERE run_id = {_lit(t)} AND split = 'validation'", t)
    if out.get("adapted"):
        eval_figures(f, "adapted", out["adapted"]["run_id"], CONDITIONS)
    for label in [k for k in out if k.startswith("probe:") and out[k]]:   # base, then the adapter at each strength
        eval_figures(f, label.replace(":", "-"), out[label]["run_id"], ("rag",))
    cmp = out.get("compare")
    if cmp:
        c = _lit(cmp["run_id"])
        w = f"FROM comparisons WHERE run_id = {c} AND condition = 'rag'"
        f.add("compare.delta", "adapted minus base accuracy under rag", f"SELECT accuracy_b - accuracy_a {w}",
              cmp["run_id"])
        f.add("compare.p", "McNemar p (rag)", f"SELECT p_value {w}", cmp["run_id"])
        f.add("compare.ci_low", "95 % interval of the difference, low", f"SELECT ci_low {w}", cmp["run_id"])
        f.add("compare.ci_high", "95 % interval of the difference, high", f"SELECT ci_high {w}", cmp["run_id"])
        f.add("compare.regressions", "regressions under rag (right before, wrong after)",
              f"SELECT string_agg(question_id, ' ' ORDER BY question_id) FROM v_regressions WHERE run_id = {c} "
              "AND condition = 'rag'", cmp["run_id"])
    if out.get("adapted") and out.get("dataset") and f"answers:{primary}" in out:
        seen_split(f, out[f"answers:{primary}"]["run_id"], out["adapted"]["run_id"], out["dataset"])
    return f, evidence_of(f, out, primary, scaling, flagged_ids, cfg)


def seen_split(f: Figures, base: str, adapted: str, dataset: dict[str, Any]) -> None:
    """Answerable rag questions split by whether their gold evidence was among the training sources (the dataset
    card's golden overlap): base and adapted accuracy on each part, so a gain that is only memorised shows."""
    d = f"FROM datasets WHERE dataset_id = {_lit(dataset['dataset_id'])} AND run_id = {_lit(dataset['run_id'])}"
    seen = (f"(SELECT unnest(CAST(json_extract(card_json, '$.golden_overlap.evidence_seen_in_training') AS VARCHAR[]))"
            f" {d})")
    for part, test in (("seen", "IN"), ("unseen", "NOT IN")):
        j = f"FROM judgements WHERE condition = 'rag' {ANSWERABLE} AND question_id {test} {seen}"
        f.add(f"split.{part}.n", f"answerable rag questions whose evidence was {part.replace('un', 'not ')} in "
              "training", f"SELECT count(*) {j} AND run_id = {_lit(base)}", base, dataset["run_id"])
        for who, run_id in (("base", base), ("adapted", adapted)):
            f.add(f"split.{part}.{who}", f"{who} rag accuracy, evidence {part.replace('un', 'not ')} in training",
                  f"SELECT {CORRECT} {j} AND run_id = {_lit(run_id)}", run_id, dataset["run_id"])


def evidence_of(f: Figures, out: dict[str, dict[str, Any]], primary: str, scaling: dict[str, float],
                flagged_ids: list[str], cfg: Config) -> Evidence:
    n_rag, answerable = f.get(f"{primary}.rag.n"), f.get(f"{primary}.rag.answerable")
    unans = f.get(f"{primary}.rag.unanswerable")
    regressions = f.get("compare.regressions")
    checked = f.get("gold.n") or f.get("retrieval.n") or 0   # answerable questions, where no answers were asked
    return Evidence(
        questions=n_rag or checked, answerable=answerable or checked,
        gold_flagged=f.get("gold.flagged"), gold_flagged_ids=flagged_ids,
        recall=f.get("retrieval.recall"), rag_accuracy=f.get(f"{primary}.rag.accuracy"),
        oracle_accuracy=f.get(f"{primary}.oracle.accuracy"),
        abstention=(f.get(f"{primary}.rag.abstained") / unans) if unans else None,
        rag_failures={k: f.get(f"{primary}.rag.fail.{k}") or 0 for k in FAILURE_KINDS[1:]},
        scaling={k: v for k, v in scaling.items() if v is not None},
        reviewed_pairs=f.get("dataset.reviewed"),
        trained_on_unreviewed=None if "dataset" not in out else not f.get("dataset.reviewed_only"),
        adapted_delta=f.get("compare.delta"), adapted_p=f.get("compare.p"),
        regressions=regressions.split() if regressions else [], alpha=cfg.eval.alpha)


def interval(k: int | None, n: int | None) -> str:
    """k of n with its 95 % Wilson interval."""
    if not n:
        return "n/a"
    lo, hi = wilson(k or 0, n)
    return f"{k}/{n} [{lo:.2f}, {hi:.2f}]"
