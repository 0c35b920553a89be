"""The ledger: one chain over every write of the store, so that one head commits to every row.

Each run's rows are chained among themselves (chain.py), but runs run side by side and a run killed mid-way is never
sealed, so no per-run chain can stand for the whole store. The ledger can: every transaction that writes rows also
appends, in the same transaction, one ledger entry per run it wrote to, holding

    position (0, 1, 2, ...), the run, its seq range, [seq, row_hash] of every row written (in seq order),
    size (rows covered by entries 0..position), prev_entry_hash, entry_hash = sha256 of all of that.

The newest entry's (size, entry_hash) is the store's head: changing, deleting or inserting any row anywhere changes
the head, unless the ledger after that row is rewritten too, which only a head kept outside the file (a checkpoint,
checkpoint.py) reveals. Why a chain of entries and not a Merkle tree (RFC 9162): a Merkle tree's gift is short
inclusion and consistency proofs for a verifier that does not hold the log; the auditor here always verifies the whole
file (every row hash is recomputed anyway, O(rows)), so a proof is a recomputation and a chain is the simplest
structure that commits to every row in write order. What the chain adds over a bare head: the row hashes recorded
at write time name the exact row a forger changed when the ledger itself was left alone.

Stores written before the ledger are sealed by migration 5: one `seal` entry per existing run, its rows as found,
with what the verification found at that moment in the entry's note.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from appliance.audit.chain import Finding, canonical

ENTRY_COLUMNS = ("position", "created_at", "kind", "run_id", "seq_from", "seq_to", "row_hashes", "size", "note",
                 "prev_entry_hash")


@dataclass(frozen=True)
class Head:
    """Where the ledger stands: rows covered, entries, and the newest entry's hash (None: an empty store)."""

    size: int
    entries: int
    hash: str | None

    def __str__(self) -> str:
        return f"size {self.size} rows, {self.entries} entries, head {self.hash}"


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 of a ledger entry's content (every column but entry_hash)."""
    content = {k: canonical(entry[k]) for k in ENTRY_COLUMNS}
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def head(con: duckdb.DuckDBPyConnection) -> Head:
    """The ledger's newest entry as a Head."""
    row = con.execute("SELECT position, size, entry_hash FROM ledger ORDER BY position DESC LIMIT 1").fetchall()
    return Head(row[0][1], row[0][0] + 1, row[0][2]) if row else Head(0, 0, None)


def append(con: duckdb.DuckDBPyConnection, now: datetime, rows: list[tuple[str, dict[str, Any]]],
           kind: str = "rows", note: str | None = None) -> None:
    """Append one entry per run among `rows` (table, row), inside the caller's transaction."""
    last = head(con)
    position, size, prev = last.entries, last.size, last.hash
    by_run: dict[str, list[dict[str, Any]]] = {}
    for _, row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    for run_id, run_rows in by_run.items():
        run_rows.sort(key=lambda r: r["seq"])
        size += len(run_rows)
        entry = {"position": position, "created_at": now, "kind": kind, "run_id": run_id,
                 "seq_from": run_rows[0]["seq"], "seq_to": run_rows[-1]["seq"],
                 "row_hashes": json.dumps([[r["seq"], r["row_hash"]] for r in run_rows]), "size": size, "note": note,
                 "prev_entry_hash": prev}
        entry["entry_hash"] = entry_hash(entry)
        cols = list(entry)
        con.execute(f"INSERT INTO ledger ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [entry[c] for c in cols])
        position, prev = position + 1, entry["entry_hash"]


def verify(entries: list[dict[str, Any]], rows_by_run: dict[str, list[tuple[str, dict[str, Any]]]]
           ) -> tuple[list[Finding], list[str]]:
    """Check the ledger's own chain and that it covers exactly the rows in the tables, with the hashes they had
    when written. Returns the findings and the recomputed entry hash of every position (for checkpoints)."""
    findings: list[Finding] = []
    recomputed: list[str] = []
    prev, size = None, 0
    covered: dict[tuple[str, int], str] = {}
    for e in entries:
        try:
            mine, size = _check_entry(e, prev, size, covered, findings)
        except (TypeError, ValueError, KeyError) as err:  # an entry edited into something that is not an entry
            findings.append(Finding(str(e.get("run_id")), "ledger_edited",
                                    f"ledger entry {e.get('position')} cannot be read: {err}"))
            mine = ""
        recomputed.append(mine)
        prev = e.get("entry_hash")
    for run_id, rows in rows_by_run.items():
        changed: list[tuple[str, int]] = []
        for table, row in sorted(rows, key=lambda tr: tr[1]["seq"]):
            recorded = covered.pop((run_id, row["seq"]), None)
            if recorded is None:
                findings.append(Finding(run_id, "unledgered", "a row the ledger never recorded: written (or "
                                        "renumbered) outside the appliance", table, row["seq"]))
            elif recorded != row["row_hash"]:
                changed.append((table, row["seq"]))
        if changed:  # a forger who recomputes the run's hashes changes every later row's hash: name the first
            later = f"; {len(changed) - 1} later rows of the run changed hash with it" if len(changed) > 1 else ""
            findings.append(Finding(run_id, "edited", "row hash differs from the one the ledger recorded when it "
                                    f"was written (the row was edited and its hashes recomputed){later}",
                                    changed[0][0], changed[0][1]))
    gone: dict[str, list[int]] = {}
    for (run_id, seq) in sorted(covered, key=lambda k: (str(k[0]), str(k[1]))):
        gone.setdefault(run_id, []).append(seq)
    for run_id, seqs in gone.items():
        findings.append(Finding(run_id, "deleted", f"{len(seqs)} rows the ledger recorded are gone (seq "
                                f"{', '.join(map(str, seqs[:10]))}{', ...' if len(seqs) > 10 else ''})"))
    return findings, recomputed


def _check_entry(e: dict[str, Any], prev: str | None, size: int, covered: dict[tuple[str, int], str],
                 findings: list[Finding]) -> tuple[str, int]:
    """One entry's own rules (its link, its hash, its running size, no row recorded twice); records its rows in
    `covered`. Returns its recomputed hash and the running size after it."""
    where = f"ledger entry {e['position']}"
    if e["prev_entry_hash"] != prev:
        findings.append(Finding(e["run_id"] or "?", "ledger_deleted",
                                f"{where}: prev_entry_hash does not link to the entry before it"))
    mine = entry_hash(e)
    if mine != e["entry_hash"]:
        findings.append(Finding(e["run_id"] or "?", "ledger_edited", f"{where}: content does not match its entry_hash"))
    hashes = json.loads(e["row_hashes"])
    size += len(hashes)
    if e["size"] != size:
        findings.append(Finding(e["run_id"] or "?", "ledger_edited",
                                f"{where}: says {e['size']} rows so far, its entries hold {size}"))
    for seq, h in hashes:
        if (e["run_id"], seq) in covered:
            findings.append(Finding(e["run_id"], "ledger_edited", f"{where}: seq {seq} recorded twice"))
        covered[(e["run_id"], seq)] = h
    return mine, size


def seal_existing(con: duckdb.DuckDBPyConnection, now: datetime, rows_by_run: dict[str, list[tuple[str, dict]]],
                  run_order: list[str], findings: list[Finding]) -> int:
    """Migration 5: one `seal` entry per run written before the ledger (oldest first), its rows as found; the
    verification findings of that moment go into each entry's note. Returns the number of rows sealed."""
    sealed = 0
    by_run_findings: dict[str, list[str]] = {}
    for f in findings:
        by_run_findings.setdefault(f.run_id, []).append(str(f))
    headed = set(run_order)
    leftovers = [r for r in rows_by_run if r not in headed]
    for run_id in [*run_order, *sorted(leftovers)]:
        rows = rows_by_run.get(run_id)
        if not rows:
            continue
        note = json.dumps({"migration": 5, "sealed_as_found": len(rows),
                           "findings_at_seal": by_run_findings.get(run_id, [])})
        append(con, now, rows, kind="seal", note=note)
        sealed += len(rows)
    return sealed
