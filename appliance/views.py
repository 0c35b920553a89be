"""What the terminal UI shows, read from the workspace: each function one query over the audit store (or the index)
returning plain rows, so the screens hold no logic and a test can check the figures without a screen."""
from __future__ import annotations

import json
from typing import Any

from appliance.audit import AuditStore, query, records
from appliance.workspace import Workspace

PASS, FAIL, REFUSED, MISSING = "✓", "✗", "⊘", "·"      # symbols as well as colour: a monochrome terminal reads them
EVAL_KINDS = ("eval-answers",)


def _rows(ws: Workspace, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    if not ws.audit_path.is_file():
        return []
    with AuditStore(ws.audit_path) as store:
        return records(store.con, sql, params)


def documents(ws: Workspace) -> list[dict[str, Any]]:
    """The indexed documents (path, access groups, chunks, when), then the files the last ingests skipped, with why."""
    out: list[dict[str, Any]] = []
    if (ws.index_dir / "documents.lance").exists():
        import lancedb

        docs = lancedb.connect(str(ws.index_dir)).open_table("documents").to_arrow().to_pylist()
        out = [{"path": d["path"], "status": "indexed", "groups": ",".join(d["groups"] or []) or "public",
                "chunks": d["n_chunks"], "when": str(d["ingested_at"])[:19], "reason": ""}
               for d in sorted(docs, key=lambda d: d["path"])]
    indexed = {d["path"] for d in out}
    skipped = _rows(ws, "SELECT path, arg_max(outcome, created_at) AS outcome, arg_max(reason, created_at) AS reason, "
                        "max(created_at) AS at FROM v_ingest_files GROUP BY path ORDER BY path")
    out += [{"path": s["path"], "status": "skipped", "groups": "", "chunks": 0, "when": str(s["at"])[:19],
             "reason": s["reason"] or ""} for s in skipped if s["outcome"] == "file_skipped" and s["path"] not in indexed]
    return out


def summary(ws: Workspace) -> dict[str, Any]:
    """The workspace at a glance: documents and chunks, runs, the latest decision."""
    docs = documents(ws)
    runs = _rows(ws, "SELECT run_id, kind, started_at, status, n_answers FROM v_runs ORDER BY started_at DESC LIMIT 8")
    decision = _rows(ws, "SELECT run_id, created_at, verdict, rule, because FROM v_decisions "
                         "ORDER BY created_at DESC LIMIT 1")
    return {"documents": sum(d["status"] == "indexed" for d in docs), "skipped": sum(d["status"] == "skipped" for d in docs),
            "chunks": sum(d["chunks"] for d in docs), "runs": runs, "decision": decision[0] if decision else None}


def eval_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Answer-evaluation runs, newest first, with accuracy per condition and the model."""
    runs = _rows(ws, "SELECT run_id, started_at, status, n_answers, models FROM v_runs WHERE kind = 'eval-answers' "
                     "ORDER BY started_at DESC")
    acc = _rows(ws, "SELECT run_id, condition, strategy, n, accuracy FROM v_accuracy")
    for r in runs:
        mine = [a for a in acc if a["run_id"] == r["run_id"]]
        r["accuracy"] = {a["condition"]: a["accuracy"] for a in mine}
        r["strategy"] = ",".join(sorted({a["strategy"] for a in mine}))
        r["models"] = (r["models"] or "").split("@")[0]
    return runs


def symbol(verdict: str, refused: bool) -> str:
    return PASS if verdict == "correct" else REFUSED if refused else FAIL


def matrix(ws: Workspace, run_id: str, failure_kind: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Question x condition for one run: each cell its verdict symbol and failure kind; `failure_kind` keeps the
    questions that failed that way under some condition."""
    cells = _rows(ws, "SELECT question_id, kind, condition, verdict, refused, failure_kind FROM judgements "
                      "WHERE run_id = ? ORDER BY question_id, condition", [run_id])
    conditions = sorted({c["condition"] for c in cells}, key=lambda c: ("closed-book", "oracle", "rag").index(c)
                        if c in ("closed-book", "oracle", "rag") else 9)
    rows: dict[str, dict[str, Any]] = {}
    for c in cells:
        row = rows.setdefault(c["question_id"], {"question_id": c["question_id"], "kind": c["kind"], "cells": {}})
        row["cells"][c["condition"]] = {"symbol": symbol(c["verdict"], c["refused"]), "verdict": c["verdict"],
                                        "failure_kind": c["failure_kind"]}
    out = list(rows.values())
    if failure_kind:
        out = [r for r in out if any(v["failure_kind"] == failure_kind for v in r["cells"].values())]
    return conditions, out


def failure_kinds(ws: Workspace, run_id: str) -> list[tuple[str, int]]:
    return [(r["failure_kind"], r["n"]) for r in _rows(
        ws, "SELECT failure_kind, count(*) AS n FROM judgements WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC", [run_id])]


def cell(ws: Workspace, run_id: str, question_id: str, condition: str) -> dict[str, Any] | None:
    """One answer in full: the prompt, the passages with their ranks, the answer, the verdict and why."""
    rows = _rows(ws, "SELECT a.question, a.prompt, a.retrieved_json, a.output, a.latency_ms, j.verdict, j.method, "
                     "j.reason, j.failure_kind, j.refused, j.evidence_in_context FROM judgements j "
                     "JOIN answers a ON a.row_hash = j.answer_row_hash "
                     "WHERE j.run_id = ? AND j.question_id = ? AND j.condition = ? ORDER BY j.seq DESC LIMIT 1",
                 [run_id, question_id, condition])
    if not rows:
        return None
    r = rows[0]
    r["passages"] = json.loads(r.pop("retrieved_json") or "[]")
    return r


def train_runs(ws: Workspace) -> list[dict[str, Any]]:
    return _rows(ws, "SELECT r.run_id, r.started_at, r.status, max(t.step) AS steps, "
                     "arg_max(t.loss, t.step) FILTER (WHERE t.split = 'train') AS train_loss, "
                     "arg_max(t.loss, t.step) FILTER (WHERE t.split = 'validation') AS validation_loss "
                     "FROM v_runs r LEFT JOIN train_steps t USING (run_id) WHERE r.kind = 'train' "
                     "GROUP BY 1, 2, 3 ORDER BY r.started_at DESC")


def curve(ws: Workspace, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Training and validation loss by step."""
    out: dict[str, list[tuple[int, float]]] = {"train": [], "validation": []}
    for r in _rows(ws, "SELECT split, step, loss FROM train_steps WHERE run_id = ? ORDER BY step", [run_id]):
        out.setdefault(r["split"], []).append((r["step"], r["loss"]))
    return out


def models_made(ws: Workspace) -> list[dict[str, Any]]:
    return _rows(ws, "SELECT created_at, name, role, dataset_id FROM v_models_made ORDER BY created_at DESC")


def equivalence(ws: Workspace) -> list[dict[str, Any]]:
    """The latest export's equivalence check: each form (base, adapter, merged) against transformers + peft."""
    return _rows(ws, "SELECT e.run_id, json_extract_string(e.payload_json, '$.form') AS form, "
                     "CAST(json_extract(e.payload_json, '$.agreement') AS DOUBLE) AS agreement, "
                     "CAST(json_extract(e.payload_json, '$.mean_abs_logprob_diff') AS DOUBLE) AS logprob_diff, "
                     "CAST(json_extract(e.payload_json, '$.passed') AS BOOLEAN) AS passed FROM events e "
                     "WHERE e.kind = 'export_equivalence' AND e.run_id = (SELECT run_id FROM events WHERE kind = "
                     "'export_equivalence' ORDER BY created_at DESC LIMIT 1) ORDER BY e.seq")


def decisions(ws: Workspace) -> list[dict[str, Any]]:
    return _rows(ws, "SELECT run_id, created_at, verdict, locus, rule, because, paths_json FROM v_decisions "
                     "ORDER BY created_at DESC")


def rungs(ws: Workspace, ladder_run: str) -> list[dict[str, Any]]:
    """The ladder run's plan (its latest `ladder_plan` event: each rung, reuse or its estimate) beside what each rung
    took: label, planned ("reuse", estimated seconds or None), seconds, state (done, reused, next, waiting; not run
    once the run has ended without it)."""
    done = _rows(ws, "SELECT label, seconds, reused FROM v_ladder_rungs WHERE run_id = ? ORDER BY created_at",
                 [ladder_run])
    plan = _rows(ws, "SELECT payload_json FROM events WHERE run_id = ? AND kind = 'ladder_plan' "
                     "ORDER BY seq DESC LIMIT 1", [ladder_run])
    rows = [{"label": p["rung"], "planned": "reuse" if p["state"] == "reuse" else p["estimate_s"], "seconds": None,
             "state": "waiting"} for p in (json.loads(plan[0]["payload_json"])["rungs"] if plan else [])]
    at = -1                                        # where the last finished rung stands
    for d in done:
        i = next((i for i, r in enumerate(rows) if r["label"] == d["label"]), None)
        if i is None:                              # a rung the plan did not name (the probes' evaluations)
            at += 1
            rows.insert(at, {"label": d["label"], "planned": None})
        else:
            at = i
        rows[at] |= {"seconds": d["seconds"], "state": "reused" if d["reused"] else "done"}
    ended = _rows(ws, "SELECT (SELECT status FROM v_runs WHERE run_id = ?) AS status, EXISTS (SELECT 1 FROM events "
                      "WHERE run_id = ? AND kind = 'decision_record') AS decided", [ladder_run, ladder_run])[0]
    for r in rows:
        if r["label"] == "decide" and ended["decided"]:
            r["state"] = "done"
        elif r["state"] == "waiting" and ended["status"] is not None:
            r["state"] = "not run"                  # the run ended without it (no dataset to train on, a failure)
    nxt = next((r for r in rows if r["state"] == "waiting"), None)
    if nxt is not None:
        nxt["state"] = "next"
    return rows


def ladder_runs(ws: Workspace) -> list[dict[str, Any]]:
    return _rows(ws, "SELECT run_id, started_at, status FROM v_runs WHERE kind = 'ladder' ORDER BY started_at DESC")


def auditor_views(ws: Workspace) -> list[str]:
    """The documented views (docs/AUDIT.md), as the store has them."""
    return [r["view_name"] for r in _rows(ws, "SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                              "AND view_name LIKE 'v_%' ORDER BY view_name")]


def sql(ws: Workspace, statement: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The auditors' read-only SQL (the same guard as `appliance audit sql`)."""
    return query(ws.audit_path, statement)
