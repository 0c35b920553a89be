"""The hash chain: how a row's hash is computed, and how `audit verify` recomputes every chain.

row_hash = sha256 of the canonical JSON of {table, every column but row_hash}; the row's prev_hash is the row_hash
of the previous row (by seq) of the same run, across all chained tables; a run's first row (in `runs`, seq 0)
carries prev_run_hash, the row_hash of the previous run's first row, so deleting a whole run breaks the next one.
A run is closed by an `events` row of kind `run_end` that records how many rows the run wrote before it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CHAIN_COLUMNS = {"run_id", "seq", "prev_hash", "row_hash", "created_at"}


def canonical(value: Any) -> Any:
    """A JSON-stable form of a column value, identical before insert and after reading it back."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, float):
        return repr(value)
    return value


def row_hash(table: str, row: dict[str, Any]) -> str:
    """sha256 of a row's content (everything but row_hash), tagged with its table."""
    content = {k: canonical(v) for k, v in row.items() if k != "row_hash"}
    blob = json.dumps({"table": table, "row": content}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Finding:
    """One problem `audit verify` found."""

    run_id: str
    problem: str  # edited | deleted | unclosed | run_deleted | unledgered | ledger_edited | ledger_deleted |
    #               rewritten | truncated | checkpoint_unsigned | checkpoint_forged | schema_changed
    detail: str
    table: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = f" {self.table}#seq={self.seq}" if self.table is not None else ""
        return f"run {self.run_id}{where}: {self.problem}: {self.detail}"


@dataclass
class VerifyReport:
    """Result of `audit verify`: rows and runs checked, and every finding."""

    runs: int = 0
    rows: int = 0
    findings: list[Finding] = field(default_factory=list)
    size: int = 0             # rows the ledger covers
    head: str | None = None   # the ledger's newest entry hash
    entry_hashes: list[str] = field(default_factory=list, repr=False)  # every ledger entry's, recomputed

    @property
    def damage(self) -> list[Finding]:
        """The findings that show a change or a loss. An unclosed run alone is none: it was killed, interrupted or is
        still running (resumable); a removed tail the ledger recorded is found as `deleted`, and one removed with the
        ledger rewritten to match is found against a checkpoint (`truncated` / `rewritten`)."""
        return [f for f in self.findings if f.problem != "unclosed"]

    @property
    def ok(self) -> bool:
        return not self.damage

    def verdict(self) -> str:
        """One line for people: intact (with the unclosed runs counted) or the damage counted."""
        if self.damage:
            return f"TAMPERING OR LOSS DETECTED ({len(self.damage)} findings)"
        unclosed = len(self.findings)  # with no damage, every finding is an unclosed run
        return "intact" + (f"; {unclosed} run(s) unclosed (killed, interrupted or still running: resumable)"
                           if unclosed else "")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "runs": self.runs, "rows": self.rows, "size": self.size, "head": self.head,
                "damage": len(self.damage), "unclosed": len(self.findings) - len(self.damage),
                "findings": [f.__dict__ | {"message": str(f)} for f in self.findings]}


def verify_rows(rows_by_run: dict[str, list[tuple[str, dict[str, Any]]]], run_order: list[str],
                open_runs: set[str]) -> VerifyReport:
    """Check every run's chain. rows_by_run: run_id -> [(table, row)]; run_order: run ids by insertion.

    open_runs are runs still in progress in this process (not yet closed), which are not reported as unclosed.
    """
    report = VerifyReport(runs=len(rows_by_run))
    for run_id, rows in rows_by_run.items():
        rows.sort(key=lambda tr: tr[1]["seq"])
        report.rows += len(rows)
        prev = None
        expected_seq = 0
        closed_count = None
        for table, row in rows:
            seq = row["seq"]
            if row_hash(table, row) != row["row_hash"]:
                report.findings.append(Finding(run_id, "edited", "row content does not match its row_hash", table, seq))
            if seq != expected_seq:
                missing = f"seq {expected_seq}..{seq - 1}" if seq > expected_seq else f"seq {seq} twice"
                report.findings.append(Finding(run_id, "deleted", f"rows missing or duplicated: {missing}", table, seq))
            if row["prev_hash"] != prev:
                report.findings.append(Finding(run_id, "deleted", "prev_hash does not link to the previous row", table, seq))
            if table == "events" and row.get("kind") == "run_end":
                closed_count = json.loads(row["payload_json"]).get("rows_before")
                if closed_count != seq:
                    report.findings.append(Finding(run_id, "deleted", f"run_end says {closed_count} rows came before it, found {seq}", table, seq))
            prev = row["row_hash"]
            expected_seq = seq + 1
        first_tables = [t for t, r in rows if r["seq"] == 0]
        if first_tables != ["runs"]:
            report.findings.append(Finding(run_id, "deleted", "the run's header row (runs, seq 0) is missing"))
        if closed_count is None and run_id not in open_runs:
            last = rows[-1][1] if rows and rows[-1][0] == "events" else {}
            why = ("interrupted (Ctrl-C or cancel) and not resumed since" if last.get("kind") == "run_interrupted"
                   else "no run_end row: the run was killed or is still running (or its last rows were removed: a "
                        "checkpoint tells)")
            report.findings.append(Finding(run_id, "unclosed", why))
        elif closed_count is not None and rows[-1][0] != "events":
            report.findings.append(Finding(run_id, "edited", "rows were appended after run_end"))
    prev_first = None
    for run_id in run_order:
        header = next((r for t, r in rows_by_run.get(run_id, []) if t == "runs"), None)
        if header is None:
            continue
        if header["prev_run_hash"] != prev_first:
            report.findings.append(Finding(run_id, "run_deleted", "prev_run_hash does not link to the previous run: a run before it was deleted or edited", "runs", 0))
        prev_first = header["row_hash"]
    return report
