"""The audit store: one DuckDB file per workspace, migrated in order, append-only, hash-chained per run.

    with store.run("ask", command=..., config=cfg) as run:
        run.append("answers", question=..., output=..., ...)

Product code only ever INSERTs. `verify()` recomputes every chain; `query()` is the auditors' read-only SQL.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from appliance.audit.chain import CHAIN_COLUMNS, Finding, VerifyReport, row_hash, verify_rows
from appliance.audit.migrations import MIGRATIONS

__all__ = ["AuditStore", "AuditError", "Run", "ReadOnlyQueryError"]

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class AuditError(RuntimeError):
    """The audit store cannot be opened or migrated as expected."""


class ReadOnlyQueryError(AuditError):
    """A statement other than SELECT/EXPLAIN was given to the auditors' SQL."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


class Run:
    """An open run: appends rows to chained tables, each linked to the previous by hash."""

    def __init__(self, store: AuditStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = 0
        self.prev_hash: str | None = None

    def append(self, table: str, **values: Any) -> str:
        """Append one row to a chained table; dicts/lists are stored as JSON. Returns the row's hash."""
        row: dict[str, Any] = {}
        for key, value in values.items():
            row[key] = _json(value) if isinstance(value, (dict, list, tuple)) else value
        row.update(run_id=self.run_id, seq=self.seq, created_at=_now(), prev_hash=self.prev_hash)
        row["row_hash"] = row_hash(table, row)
        self.store._insert(table, row)
        self.prev_hash = row["row_hash"]
        self.seq += 1
        return row["row_hash"]

    def event(self, kind: str, **payload: Any) -> str:
        """Append an event row (errors, skipped inputs, progress marks)."""
        return self.append("events", kind=kind, payload_json=payload)

    def close(self, status: str = "ok", **payload: Any) -> None:
        """Write the run_end row that seals the run's row count."""
        self.event("run_end", status=status, rows_before=self.seq, **payload)
        self.store._open_runs.discard(self.run_id)


class AuditStore:
    """Open (creating and migrating) the audit DuckDB file for appending."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), config={"autoinstall_known_extensions": False,
                                                              "autoload_known_extensions": False})
        except duckdb.Error as e:
            raise AuditError(f"cannot open audit store {self.path}: {e}") from None
        self._open_runs: set[str] = set()
        self._migrate()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        self.con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, sql_sha256 VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)""")
        applied = {v: s for v, s in self.con.execute("SELECT version, sql_sha256 FROM schema_migrations").fetchall()}
        for version, name, sql in MIGRATIONS:
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if version in applied:
                if applied[version] != digest:
                    raise AuditError(f"{self.path}: migration {version} ({name}) differs from the one applied; "
                                     f"this store was written by another version of the appliance")
                continue
            self.con.execute("BEGIN TRANSACTION")
            try:
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)", [version, name, digest, _now()])
                self.con.execute("COMMIT")
            except duckdb.Error:
                self.con.execute("ROLLBACK")
                raise
        unknown = set(applied) - {v for v, _, _ in MIGRATIONS}
        if unknown:
            raise AuditError(f"{self.path} has migrations {sorted(unknown)} this appliance does not know: upgrade it")

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = list(row)
        self.con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                         [row[c] for c in cols])

    def start_run(self, kind: str, command: str, config: dict[str, Any], version: str) -> Run:
        """Append a run header (seq 0) linked to the previous run's header, and return the open run."""
        last = self.con.execute("SELECT row_hash FROM runs ORDER BY created_at DESC LIMIT 1").fetchall()
        run = Run(self, uuid.uuid4().hex[:16])
        config_json = _json(config)
        run.append("runs", kind=kind, command=command, os_user=getpass.getuser(), host=socket.gethostname(),
                   appliance_version=version, config_json=config_json,
                   config_sha256=hashlib.sha256(config_json.encode()).hexdigest(),
                   prev_run_hash=last[0][0] if last else None)
        self._open_runs.add(run.run_id)
        return run

    @contextmanager
    def run(self, kind: str, command: str, config: dict[str, Any], version: str) -> Iterator[Run]:
        """A run that is closed with status ok, or failed (and the error recorded) if the block raises."""
        run = self.start_run(kind, command, config, version)
        try:
            yield run
        except BaseException as e:
            run.close("failed", error=f"{type(e).__name__}: {e}")
            raise
        run.close("ok")

    def chained_tables(self) -> list[str]:
        """Tables that carry the chain columns (found from the schema, so new tables join automatically)."""
        rows = self.con.execute("""SELECT table_name, list(column_name) FROM information_schema.columns
                                   WHERE table_schema = 'main' GROUP BY table_name""").fetchall()
        return sorted(t for t, cols in rows if CHAIN_COLUMNS <= set(cols))

    def verify(self) -> VerifyReport:
        """Recompute every run's chain and report edited, deleted or unclosed rows."""
        by_run: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for table in self.chained_tables():
            cur = self.con.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            for values in cur.fetchall():
                row = dict(zip(names, values))
                by_run.setdefault(row["run_id"], []).append((table, row))
        order = [r for (r,) in self.con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()]
        report = verify_rows(by_run, order, self._open_runs)
        return report

    def check_head(self, expected: str, report: VerifyReport) -> None:
        """Add a finding to `report` unless a run header with row_hash `expected` (an earlier head) still exists."""
        found = self.con.execute("SELECT run_id FROM runs WHERE row_hash = ?", [expected]).fetchall()
        if not found:
            report.findings.append(Finding("?", "run_deleted", f"the run with head hash {expected} is gone"))

    def head(self) -> str | None:
        """row_hash of the newest run header: record it elsewhere to detect a later deletion of that whole run."""
        last = self.con.execute("SELECT row_hash FROM runs ORDER BY created_at DESC LIMIT 1").fetchall()
        return last[0][0] if last else None


def query(path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run one auditor's statement read-only: only SELECT/EXPLAIN, on a read-only connection without file access."""
    con_check = duckdb.connect()
    try:
        statements = con_check.extract_statements(sql)
    except duckdb.Error as e:
        raise ReadOnlyQueryError(f"cannot parse the statement: {e}") from None
    finally:
        con_check.close()
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"give exactly one statement (got {len(statements)})")
    if statements[0].type not in READ_ONLY_STATEMENTS:
        raise ReadOnlyQueryError(f"refused: {statements[0].type.name} statements are not allowed; "
                                 f"the audit log is read-only (SELECT and EXPLAIN only)")
    if not Path(path).is_file():
        raise AuditError(f"no audit store at {path}")
    con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False,
                                                             "autoinstall_known_extensions": False,
                                                             "autoload_known_extensions": False})
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall()
    except duckdb.Error as e:
        raise AuditError(f"query failed: {e}") from None
    finally:
        con.close()
