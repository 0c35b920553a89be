"""The audit store: one DuckDB file per workspace, migrated in order, append-only, hash-chained per run.

    with store.run("ask", command=..., config=cfg) as run:     # (Workspace.run fills command, config, version)
        run.append("answers", question=..., output=..., ...)

Product code only ever INSERTs. Every write also appends to the ledger (ledger.py), whose head commits to every row;
`verify()` recomputes every run's chain and the ledger, against heads and checkpoints kept elsewhere
(checkpoint.py); `query()` is the auditors' read-only SQL; the read API (`find_run`, `runs`, `rows`, `events`) is
what code asks of it.

No connection is held while a run works: rows are buffered by the run and written in one short transaction at each
`flush()` (long loops flush after every unit of work; `close()` flushes), so auditors can query and other commands
can write while a long evaluation runs. A process killed between flushes loses only its unflushed rows; every
written transaction is whole.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from appliance.audit import checkpoint, ledger
from appliance.audit.chain import CHAIN_COLUMNS, Finding, VerifyReport, row_hash, verify_rows
from appliance.audit.ledger import Head
from appliance.audit.migrations import MIGRATIONS
from appliance.errors import Cancelled, UsageError
from appliance.interrupts import is_interrupt

__all__ = ["AuditStore", "AuditError", "Head", "Run", "RunInfo", "ReadOnlyQueryError", "config_sha256", "records"]

READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
LOCK_WAIT_S = 60.0          # how long to wait for another process's write to finish before giving up
# DuckDB shares one database instance among a process's connections to a file; a connection opened while another
# thread closes the instance's last one fails ("already attached"), so this process opens and closes them in turn.
_OPEN_CLOSE = threading.Lock()
# Threads of one process write through that shared instance side by side, and each write takes the ledger's next
# position: they write in turn, so none loses that race (another process cannot write while this one holds the file).
_WRITES = threading.Lock()
FLUSH_EVERY = 500           # rows buffered by a run before they are written without being asked
LEDGER_MIGRATION = 5        # the migration after which every run written before it is sealed into the ledger


class AuditError(RuntimeError):
    """The audit store cannot be opened or migrated as expected."""


class ReadOnlyQueryError(AuditError, UsageError):
    """A statement other than SELECT/EXPLAIN was given to the auditors' SQL."""


@dataclass(frozen=True)
class RunInfo:
    """A run as code reads it: its header, and how it ended (status None: not closed - running or killed)."""

    run_id: str
    kind: str
    started_at: datetime
    command: str
    config: dict[str, Any]
    config_sha256: str
    status: str | None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


class Run:
    """An open run: appends rows to chained tables, each linked to the previous by hash; rows are buffered and
    written by `flush()`."""

    def __init__(self, store: AuditStore, run_id: str, seq: int = 0, prev_hash: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = seq
        self.prev_hash = prev_hash
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._written = (seq, prev_hash)   # where the chain stands in the store (after the last flush)

    def append(self, table: str, **values: Any) -> str:
        """Append one row to a chained table; dicts/lists are stored as JSON. Returns the row's hash."""
        row: dict[str, Any] = {}
        types = self.store.column_types(table)
        for key, value in values.items():  # each value hashed as it will read back from its column
            if isinstance(value, (dict, list, tuple)):
                value = _json(value)
            elif types.get(key) == "DOUBLE" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # a DOUBLE column returns 11.0 for 11
            elif types.get(key) == "VARCHAR" and value is not None and not isinstance(value, str):
                value = str(value)  # a VARCHAR column returns '5' for 5
            row[key] = value
        row.update(run_id=self.run_id, seq=self.seq, created_at=_now(), prev_hash=self.prev_hash)
        row["row_hash"] = row_hash(table, row)
        self._pending.append((table, row))
        self.prev_hash = row["row_hash"]
        self.seq += 1
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()
        return row["row_hash"]

    def flush(self) -> None:
        """Write the buffered rows in one transaction (all or none). A Ctrl-C that lands after the transaction was
        made durable still counts its rows as written, so the run's next rows do not reuse their seq."""
        if not self._pending:
            return
        written = False
        try:
            self.store._write(lambda con: self._pending)
            written = True
        finally:
            if written or self.store._has_landed(self._pending):
                self._pending = []
                self._written = (self.seq, self.prev_hash)

    def discard(self) -> None:
        """Drop the buffered rows (a unit of work that will not finish); the chain goes on from the last write."""
        self._pending = []
        self.seq, self.prev_hash = self._written

    def event(self, kind: str, **payload: Any) -> str:
        """Append an event row (errors, skipped inputs, progress marks)."""
        return self.append("events", kind=kind, payload_json=payload)

    def close(self, status: str = "ok", **payload: Any) -> None:
        """Write the run_end row that seals the run's row count, and everything still buffered."""
        self.event("run_end", status=status, rows_before=self.seq, **payload)
        self.flush()
        self.store._open_runs.discard(self.run_id)


class AuditStore:
    """Open (creating and migrating) the audit DuckDB file for appending."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._open_runs: set[str] = set()
        self._types: dict[str, dict[str, str]] = {}
        with self._connection() as con:
            self._migrate(con)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """A connection for reading, opened on first use and held until `close()` (keep such uses short)."""
        if self._con is None:
            self._con = _connect(self.path)
        return self._con

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is not None:
            yield self._con
            return
        con = _connect(self.path)
        try:
            yield con
        finally:
            _close(con)

    def close(self) -> None:
        if self._con is not None:
            _close(self._con)
            self._con = None

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def column_types(self, table: str) -> dict[str, str]:
        """Column -> DOUBLE | VARCHAR | other type name, for a table (read once per store)."""
        if table not in self._types:
            with self._connection() as con:
                rows = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
                                   [table]).fetchall()
            self._types[table] = {c: "DOUBLE" if t in ("DOUBLE", "FLOAT", "REAL") else t for c, t in rows}
        return self._types[table]

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, sql_sha256 VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)""")
        applied = {v: s for v, s in con.execute("SELECT version, sql_sha256 FROM schema_migrations").fetchall()}
        for version, name, sql in MIGRATIONS:
            digest = hashlib.sha256(sql.encode()).hexdigest()
            if version in applied:
                if applied[version] != digest:
                    raise AuditError(f"{self.path}: migration {version} ({name}) differs from the one applied; "
                                     f"this store was written by another version of the appliance")
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(sql)
                if version == LEDGER_MIGRATION:
                    rows_by_run, order = _load(con)
                    found = verify_rows({r: list(v) for r, v in rows_by_run.items()}, order, set()).findings
                    ledger.seal_existing(con, _now(), rows_by_run, order, found)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?, ?)", [version, name, digest, _now()])
                con.execute("COMMIT")
            except duckdb.Error:
                con.execute("ROLLBACK")
                raise
        unknown = set(applied) - {v for v, _, _ in MIGRATIONS}
        if unknown:
            raise AuditError(f"{self.path} has migrations {sorted(unknown)} this appliance does not know: upgrade it")

    def _write(self, make: Callable[[duckdb.DuckDBPyConnection], list[tuple[str, dict[str, Any]]]]) -> None:
        """Write the rows `make` returns, and their ledger entry, in one transaction. `make` runs inside it, so what
        it reads (the previous run header) is what the write is made against."""
        with _WRITES, self._connection() as con:
            con.execute("BEGIN TRANSACTION")
            rows: list[tuple[str, dict[str, Any]]] = []
            try:
                rows = make(con)
                for (table, cols), batch in _batches(rows).items():
                    _insert(con, table, cols, batch)
                ledger.append(con, _now(), rows)
                con.execute("COMMIT")
            except (duckdb.ConstraintException, duckdb.TransactionException):
                _rollback(con)
                if not _landed(con, rows):  # a COMMIT that reported failure after it was made durable: not again
                    raise
            except BaseException:  # an interrupt too: the connection may be held, the run go on writing
                _rollback(con)
                raise

    def _has_landed(self, rows: list[tuple[str, dict[str, Any]]]) -> bool:
        """Whether a write that ended in an exception is in the store all the same (see `_landed`)."""
        try:
            with self._connection() as con:
                return _landed(con, rows)
        except AuditError:
            return False

    def start_run(self, kind: str, command: str, config: dict[str, Any], version: str) -> Run:
        """Append a run header (seq 0) linked to the previous run's header, and return the open run."""
        run = Run(self, uuid.uuid4().hex[:16])
        config_json = _json(config)

        def header(con: duckdb.DuckDBPyConnection) -> list[tuple[str, dict[str, Any]]]:
            run.discard()  # a retried write makes the header again, against the newest header then
            last = con.execute("SELECT row_hash FROM runs ORDER BY created_at DESC LIMIT 1").fetchall()
            run.append("runs", kind=kind, command=command, os_user=getpass.getuser(), host=socket.gethostname(),
                       appliance_version=version, config_json=config_json, config_sha256=config_sha256(config),
                       prev_run_hash=last[0][0] if last else None)
            return run._pending
        self._write(header)
        run._pending, run._written = [], (run.seq, run.prev_hash)
        self._open_runs.add(run.run_id)
        return run

    def closed(self, run_id: str, con: duckdb.DuckDBPyConnection | None = None) -> bool:
        """Whether the run has its run_end row (finished, or failed and sealed)."""
        return bool((con or self.con).execute("SELECT count(*) FROM events WHERE run_id = ? AND kind = 'run_end'",
                                              [run_id]).fetchone()[0])

    def reopen_run(self, run_id: str) -> Run:
        """Continue an unclosed run (killed before its run_end) from its last written row."""
        with self._connection() as con:
            last = None
            for table in self.chained_tables(con):
                row = con.execute(f"SELECT seq, row_hash FROM {table} WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                                  [run_id]).fetchall()
                if row and (last is None or row[0][0] > last[0]):
                    last = row[0]
            ended = self.closed(run_id, con)
        if last is None:
            raise AuditError(f"no run {run_id} in {self.path}")
        if ended:
            raise AuditError(f"run {run_id} is closed (it has a run_end row); only a killed run can be resumed")
        self._open_runs.add(run_id)
        return Run(self, run_id, seq=last[0] + 1, prev_hash=last[1])

    @contextmanager
    def run(self, kind: str, command: str, config: dict[str, Any], version: str) -> Iterator[Run]:
        """A run that is closed with status ok, or failed (and the error recorded) if the block raises."""
        run = self.start_run(kind, command, config, version)
        yield from _closing(run)

    @contextmanager
    def resumed(self, run_id: str) -> Iterator[Run]:
        """An unclosed run reopened, closed like `run()` at the end of the block."""
        yield from _closing(self.reopen_run(run_id))

    def runs(self, kinds: tuple[str, ...] | None = None, prefix: str = "") -> list[RunInfo]:
        """Runs (of the given kinds, whose id starts with `prefix`), oldest first."""
        sql = """SELECT r.run_id, r.kind, r.created_at, r.command, r.config_json, r.config_sha256,
                        json_extract_string(e.payload_json, '$.status')
                 FROM runs r LEFT JOIN events e ON e.run_id = r.run_id AND e.kind = 'run_end'
                 WHERE starts_with(r.run_id, ?)"""
        params: list[Any] = [prefix]
        if kinds:
            sql += f" AND r.kind IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        rows = self.con.execute(sql + " ORDER BY r.created_at", params).fetchall()
        return [RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def find_run(self, prefix: str, kinds: tuple[str, ...] | None = None) -> RunInfo:
        """The one run whose id is `prefix` or starts with it (among `kinds`); a clear error when there is none
        or more than one."""
        what = " or ".join(f"`{k}`" for k in kinds) + " " if kinds else ""
        if not prefix:
            raise UsageError("give a run id (or a unique prefix of one)")
        found = self.runs(kinds, prefix)
        if not found:
            raise UsageError(f"run {prefix!r}: no {what}run with that id in {self.path}")
        if len(found) > 1:
            raise UsageError(f"run {prefix!r}: ambiguous prefix ({', '.join(r.run_id for r in found)})")
        return found[0]

    def rows(self, table: str, run_id: str, **where: Any) -> list[dict[str, Any]]:
        """The rows of a run in one chained table, in the order they were written (`where`: column = value)."""
        if table not in self.chained_tables():
            raise AuditError(f"{table} is not a table of the audit store")
        cond = "".join(f" AND {k} = ?" for k in where)
        return records(self.con, f"SELECT * FROM {table} WHERE run_id = ?{cond} ORDER BY seq", [run_id, *where.values()])

    def events(self, run_id: str, *kinds: str) -> list[dict[str, Any]]:
        """A run's events of the given kinds (all without), oldest first, each its payload plus `kind` and `seq`."""
        rows = self.rows("events", run_id)
        return [json.loads(r["payload_json"]) | {"kind": r["kind"], "seq": r["seq"]}
                for r in rows if not kinds or r["kind"] in kinds]

    def chained_tables(self, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        """Tables that carry the chain columns (found from the schema, so new tables join automatically)."""
        return _chained_tables(con or self.con)

    def verify(self, expect_heads: tuple[str, ...] = (), checkpoints: tuple[dict[str, Any], ...] = (),
               public_key: Any = None) -> VerifyReport:
        """Recompute every run's chain and the ledger; report edited, deleted, inserted or unclosed rows, and any
        head noted earlier (`expect_heads`) or checkpoint (checked against `public_key` when given) that the store
        no longer extends."""
        rows_by_run, order = _load(self.con)
        report = verify_rows(rows_by_run, order, self._open_runs)
        report.findings += _schema_findings(self.con)
        entries = self._ledger_entries()
        found, recomputed = ledger.verify(entries, rows_by_run)
        report.findings += found
        now = ledger.head(self.con)
        report.size, report.head, report.entry_hashes = now.size, now.hash, recomputed
        for expected in expect_heads:
            if expected not in recomputed and not self._old_head(expected):
                report.findings.append(Finding("?", "rewritten", f"the head {expected} noted earlier is not in the "
                                               "ledger: rows before it were changed, removed or inserted"))
        for i, cp in enumerate(checkpoints, 1):
            report.findings += checkpoint.check(cp, recomputed, entries, public_key, f"checkpoint {i}")
        return report

    def _ledger_entries(self) -> list[dict[str, Any]]:
        return records(self.con, "SELECT * FROM ledger ORDER BY position")

    def _old_head(self, expected: str) -> bool:
        """A head noted before the ledger existed (a run header's hash) still names a run that is there."""
        return bool(self.con.execute("SELECT count(*) FROM ledger WHERE kind = 'seal'").fetchone()[0]) and bool(
            self.con.execute("SELECT count(*) FROM runs WHERE row_hash = ?", [expected]).fetchone()[0])

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest checkpoint `audit checkpoint` recorded in this store (size, head, time, key_id, file)."""
        row = self.con.execute("SELECT payload_json FROM events WHERE kind = 'checkpoint' ORDER BY created_at DESC "
                               "LIMIT 1").fetchall()
        return json.loads(row[0][0]) if row else None

    def provenance(self) -> str:
        """One line for a report: the head it was written at and the checkpoint it was made under."""
        head, cp = self.head(), self.latest_checkpoint()
        line = f"Audit store head {head.hash} ({head.size} rows) when written"
        if cp is None:
            return line + "; no checkpoint made yet (`appliance audit checkpoint`)."
        signed = f", signed by key {cp['key_id']}" if cp.get("key_id") else ", unsigned"
        return line + f"; made under checkpoint {cp['time']} ({cp['size']} rows, head {cp['head']}{signed})."

    def head(self) -> Head:
        """The ledger's head: note it (or `audit checkpoint` it) elsewhere to detect any later change."""
        return ledger.head(self.con)


def config_sha256(config: dict[str, Any]) -> str:
    """The hash a run header records of its configuration."""
    return hashlib.sha256(_json(config).encode()).hexdigest()


def records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a query as dicts by column name."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _load(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, list[tuple[str, dict[str, Any]]]], list[str]]:
    """Every chained row by run (table, row), and the run ids in the order their headers were written."""
    by_run: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for table in _chained_tables(con):
        for row in records(con, f"SELECT * FROM {table}"):
            by_run.setdefault(row["run_id"], []).append((table, row))
    order = [r for (r,) in con.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()]
    return by_run, order


def _landed(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, dict[str, Any]]]) -> bool:
    """Whether a write whose transaction ended in an error is in the store all the same (its last row is there:
    a write is whole or absent), so that retrying it would write its rows twice."""
    if not rows:
        return False
    table, row = rows[-1]
    try:
        return bool(con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ? AND seq = ? AND row_hash = ?",
                                [row["run_id"], row["seq"], row["row_hash"]]).fetchone()[0])
    except duckdb.Error:
        return False


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, unless the failed COMMIT already did (a conflict ends the transaction)."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass


def _insert(con: duckdb.DuckDBPyConnection, table: str, cols: tuple[str, ...], batch: list[dict[str, Any]]) -> None:
    """One INSERT of a batch through Arrow (6x faster than a statement per row, measured); a batch whose values
    Arrow cannot type as one column (e.g. ints and strings mixed) goes row by row and is cast by DuckDB."""
    names = ", ".join(cols)
    try:
        arrow = pa.Table.from_pylist(batch)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for row in batch:
            con.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols])
        return
    con.register("_audit_rows", arrow)
    try:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _audit_rows")
    finally:
        con.unregister("_audit_rows")


def _batches(rows: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]]:
    """Rows grouped by table and column set, in order within each group."""
    out: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, row in rows:
        out.setdefault((table, tuple(row)), []).append(row)
    return out


def _schema(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, str], set[tuple[str, str, str]]]:
    views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    columns = set(con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'main' AND table_name <> 'schema_migrations'").fetchall())
    return views, columns


def _schema_findings(con: duckdb.DuckDBPyConnection) -> list[Finding]:
    """Views and tables that differ from what the migrations create (a view redefined to hide rows is a change
    to what auditors read, though no row changed)."""
    fresh = duckdb.connect()
    try:
        for _, _, sql in MIGRATIONS:
            fresh.execute(sql)
        want_views, want_columns = _schema(fresh)
    finally:
        fresh.close()
    views, columns = _schema(con)
    found = [Finding("?", "schema_changed", f"view {v} is not the one the migrations create")
             for v in sorted(set(want_views) | set(views)) if want_views.get(v) != views.get(v)]
    for table in sorted({t for t, _, _ in want_columns ^ columns} - set(want_views) - set(views)):
        found.append(Finding("?", "schema_changed", f"table {table} does not have the columns the migrations create"))
    return found


def _chained_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("""SELECT c.table_name, list(c.column_name) FROM information_schema.columns c
                          JOIN information_schema.tables t ON t.table_name = c.table_name
                           AND t.table_schema = c.table_schema AND t.table_type = 'BASE TABLE'
                          WHERE c.table_schema = 'main' GROUP BY c.table_name""").fetchall()
    return sorted(t for t, cols in rows if CHAIN_COLUMNS <= set(cols))  # tables only: a view is no record


def _closing(run: Run) -> Iterator[Run]:
    """Yield `run`; close it ok, or failed with the error recorded if the block raises. An interrupt (Ctrl-C) or a
    cancel (Cancelled, from a UI) drops the rows of the unit of work in progress and leaves the run unclosed, as a
    kill would: it can be resumed."""
    try:
        yield run
    except BaseException as e:
        if not is_interrupt(e):
            run.close("failed", error=f"{type(e).__name__}: {e}")
            raise
        run.discard()
        run.store._open_runs.discard(run.run_id)
        try:  # say that no process works on it any more (a kill cannot say so; a resume then checks the pid)
            run.event("run_interrupted", reason="cancelled" if isinstance(e, Cancelled) else "interrupted")
            run.flush()
        except (duckdb.Error, AuditError):
            run.discard()
        raise
    run.close("ok")


def _connect(path: Path, read_only: bool = False, **config: Any) -> duckdb.DuckDBPyConnection:
    """Open the store, waiting up to LOCK_WAIT_S while another process holds it for a write."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            with _OPEN_CLOSE:
                return duckdb.connect(str(path), read_only=read_only,
                                      config={"autoinstall_known_extensions": False,
                                              "autoload_known_extensions": False} | config)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() > deadline:
                raise AuditError(f"cannot open audit store {path}: {e}") from None
            time.sleep(0.1)
        except duckdb.Error as e:
            raise AuditError(f"cannot open audit store {path}: {e}") from None


def _close(con: duckdb.DuckDBPyConnection) -> None:
    with _OPEN_CLOSE:
        con.close()


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
    con = _connect(path, read_only=True, enable_external_access=False)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall()
    except duckdb.Error as e:
        raise AuditError(f"query failed: {e}") from None
    finally:
        _close(con)
