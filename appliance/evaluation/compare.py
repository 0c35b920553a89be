"""`appliance compare RUN_A RUN_B`: per-question flips and paired statistics, per condition both runs share.

B is read as the candidate against the baseline A: `a_only` questions (right in A, wrong in B) are regressions.
"""
from __future__ import annotations

from typing import Any

from appliance.audit import AuditStore, records
from appliance.errors import UsageError
from appliance.evaluation.report import comparison_report, record_reports
from appliance.evaluation.stats import paired_test
from appliance.llm import parse_adapter
from appliance.workspace import Workspace

EVAL_KINDS = ("eval-answers", "eval-rejudge")   # the runs that hold judged answers


def _judged(store: AuditStore, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = records(store.con, """SELECT j.question_id, j.condition, j.strategy, j.verdict, j.failure_kind, j.kind,
                                        a.model_name, a.adapter_id, a.output
                                 FROM judgements j JOIN answers a ON a.row_hash = j.answer_row_hash
                                 WHERE j.run_id = ?""", [run_id])
    return {(r["question_id"], r["condition"]): r for r in rows}


def evidence_seen(ws: Workspace, adapters: list[str]) -> tuple[set[str], str | None]:
    """Golden question ids whose gold evidence was among the training sources of the adapter's dataset (its card;
    the adapter at any strength), and the dataset's id; nothing when no adapter was involved or its dataset is gone."""
    import json

    if not adapters:
        return set(), None
    try:
        dataset = ws.models.get(parse_adapter(adapters[0])[0]).lineage.get("dataset_id")
    except UsageError:
        return set(), None
    card = ws.root / "datasets" / str(dataset) / "card.json"
    if not dataset or not card.is_file():
        return set(), None
    return set(json.loads(card.read_text())["golden_overlap"]["evidence_seen_in_training"]), dataset


def _split(keys: list[tuple[str, str]], va: list[bool], vb: list[bool], seen: set[str]) -> dict[str, Any]:
    """Accuracy of A and B on the questions whose evidence was seen in training and on the others."""
    out = {}
    for part, pick in (("seen", True), ("unseen", False)):
        idx = [i for i, k in enumerate(keys) if (k[0] in seen) == pick]
        n = len(idx)
        out[part] = {"n": n, "accuracy_a": round(sum(va[i] for i in idx) / n, 4) if n else None,
                     "accuracy_b": round(sum(vb[i] for i in idx) / n, 4) if n else None}
    return out


def compare_runs(ws: Workspace, run_a: str, run_b: str, condition: str | None = None,
                 command: str = "") -> dict[str, Any]:
    """Compare two evaluation runs question by question; record and return the comparison."""
    cfg = ws.config.eval
    with AuditStore(ws.audit_path) as store:
        run_a, run_b = (store.find_run(r, EVAL_KINDS).run_id for r in (run_a, run_b))
        a, b = _judged(store, run_a), _judged(store, run_b)
    conditions = sorted({c for _, c in a} & {c for _, c in b})
    if condition:
        conditions = [c for c in conditions if c == condition]
    if not conditions:
        raise UsageError(f"runs {run_a} and {run_b} share no condition{' ' + condition if condition else ''}")
    result: dict[str, Any] = {"run_a": run_a, "run_b": run_b,
                              "strategy_a": sorted({r["strategy"] for r in a.values()}),
                              "strategy_b": sorted({r["strategy"] for r in b.values()}),
                              "model_a": sorted({r["model_name"] for r in a.values()}),
                              "model_b": sorted({r["model_name"] for r in b.values()}),
                              "adapter_a": sorted({r["adapter_id"] for r in a.values() if r["adapter_id"]}),
                              "adapter_b": sorted({r["adapter_id"] for r in b.values() if r["adapter_id"]}),
                              "conditions": {}}
    seen, dataset = evidence_seen(ws, result["adapter_b"] or result["adapter_a"])
    result["evidence_seen_from"] = dataset
    with ws.run("compare", command) as run:
        for cond in conditions:
            keys = sorted(k for k in a if k[1] == cond and k in b)
            va = [a[k]["verdict"] == "correct" for k in keys]
            vb = [b[k]["verdict"] == "correct" for k in keys]
            test = paired_test(va, vb, cfg.bootstrap_resamples, cfg.alpha, seed=ws.config.llm.seed)
            flips = [{"question_id": k[0], "kind": a[k]["kind"], "a": a[k]["verdict"], "b": b[k]["verdict"],
                      "a_failure": a[k]["failure_kind"], "b_failure": b[k]["failure_kind"]}
                     for k, x, y in zip(keys, va, vb) if x != y]
            unmatched = len({k for k in a if k[1] == cond} ^ {k for k in b if k[1] == cond})
            run.append("comparisons", run_a=run_a, run_b=run_b, condition=cond, n_pairs=test.n,
                       accuracy_a=test.accuracy_a, accuracy_b=test.accuracy_b, a_only=test.a_only,
                       b_only=test.b_only, p_value=test.p_value, ci_low=test.ci_low, ci_high=test.ci_high,
                       verdict=test.verdict, flips_json=flips)
            result["conditions"][cond] = test.__dict__ | {
                "flips": flips, "unmatched_questions": unmatched,
                "regressions": [f["question_id"] for f in flips if f["a"] == "correct"],
                "evidence_split": _split(keys, va, vb, seen) if dataset else None}
        result["run_id"] = run.run_id
        result["alpha"] = cfg.alpha
        record_reports(run, comparison_report(ws, result), result)
    return result

