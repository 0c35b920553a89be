"""Review of synthetic pairs by a person: list them with their source passage and filter scores; approve, reject or
edit them by id; approve in bulk by a filter, with a recorded reason. Every action is an sdg_reviews row (who, when,
why, and an edit's new text) in the audit store; a pair's state is its latest review."""
from __future__ import annotations

import getpass
from typing import Any

from appliance.audit import AuditStore
from appliance.errors import UsageError
from appliance.sdg.dataset import pair_states
from appliance.workspace import Workspace

ACTIONS = ("approve", "reject", "edit")
STATUSES = ("pending", "approved", "rejected", "edited", "failed", "all")


def _status(p: dict[str, Any]) -> str:
    if p["review"] == "approve":
        return "approved"
    if p["review"] == "reject":
        return "rejected"
    if p["review"] == "edit":
        return "edited"
    return "pending" if p["passed"] else "failed"


def list_pairs(ws: Workspace, status: str = "pending", kind: str | None = None, split: str | None = None,
               limit: int | None = None, with_sources: bool = True) -> list[dict[str, Any]]:
    """Pairs in a review status, each with its filter outcomes and (with_sources) its source passage."""
    if status not in STATUSES:
        raise UsageError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    with AuditStore(ws.audit_path) as store:
        states = pair_states(store)
        rows = [p | {"status": _status(p)} for p in states
                if (status == "all" or _status(p) == status) and (kind is None or p["kind"] == kind)
                and (split is None or p["split"] == split)][: limit or None]
        for p in rows:
            p["filters"] = [{k: f[k] for k in ("filter", "passed", "score", "threshold", "detail")}
                            for f in store.rows("sdg_filters", p["run_id"], pair_id=p["pair_id"])]
    if with_sources and rows:
        from appliance.retrieval import Retriever

        chunks = {c["chunk_id"]: c["text"] for c in Retriever(ws.config, ws.index_dir).index.visible_chunks([])}
        for p in rows:
            p["source"] = chunks.get(p["chunk_id"], "(not visible without access groups, or no longer indexed)")
    return rows


def review(ws: Workspace, pair_ids: list[str], action: str, reason: str = "", reviewer: str | None = None,
           question: str | None = None, answer: str | None = None, command: str = "") -> dict[str, Any]:
    """Record one review action on the given pairs (ids or unique prefixes); returns what was recorded."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r} (choose {', '.join(ACTIONS)})")
    if action == "reject" and not reason.strip():
        raise UsageError("a rejection needs --reason (the next reviewer reads it)")
    if action == "edit" and not (question or answer):
        raise UsageError("an edit needs --question and/or --answer")
    if action == "edit" and len(pair_ids) != 1:
        raise UsageError("edit one pair at a time")
    with AuditStore(ws.audit_path) as store:
        known = {p["pair_id"]: p for p in pair_states(store)}
    resolved = []
    for pid in pair_ids:
        hits = [k for k in known if k.startswith(pid)]
        if len(hits) != 1:
            raise UsageError(f"pair {pid!r}: " + ("no such pair" if not hits else "ambiguous prefix"))
        resolved.append(hits[0])
    if action == "approve":
        failed = [p for p in resolved if not known[p]["passed"]]
        if failed:
            raise UsageError(f"pairs {', '.join(failed)} failed a filter; edit them (or leave them out) instead")
    who = reviewer or getpass.getuser()
    with ws.run("sdg-review", command) as run:
        for pid in resolved:
            run.append("sdg_reviews", pair_id=pid, action=action, reviewer=who, reason=reason,
                       question=" ".join(question.split()) if question else None,
                       answer=" ".join(answer.split()) if answer else None)
        return {"run_id": run.run_id, "action": action, "reviewer": who, "pairs": resolved, "reason": reason}


def approve_where(ws: Workspace, reason: str, kind: str | None = None, split: str | None = None,
                  reviewer: str | None = None, command: str = "") -> dict[str, Any]:
    """Approve every pending pair that passed every filter (of a kind / split), with a recorded reason."""
    if not reason.strip():
        raise UsageError("a bulk approval needs --reason (it is recorded with every pair)")
    pending = [p["pair_id"] for p in list_pairs(ws, "pending", kind, split, with_sources=False)]
    if not pending:
        raise UsageError("no pending pair matches")
    return review(ws, pending, "approve", f"bulk: {reason}", reviewer, command=command)
