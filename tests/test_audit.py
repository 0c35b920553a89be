"""The audit store: migrations, the hash chain, tamper detection and the read-only SQL."""
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from appliance.audit import AuditError, AuditStore, ReadOnlyQueryError, query
from appliance.audit.migrations import MIGRATIONS


def _answer(run, text: str) -> None:
    run.append("answers", question_id="q1", question="Q?", condition="closed-book", strategy="single",
               model_name="m", model_sha256="0" * 64, adapter_id=None, adapter_sha256=None, template_id="t/v1",
               prompt="p", prompt_sha256="1" * 64, retrieved_json=[], params_json={"temperature": 0.0}, seed=0,
               output=text, finish_reason="stop", prompt_tokens=3, completion_tokens=2, latency_ms=12.5)


def _store_with_runs(path: Path, n_runs: int = 2, n_answers: int = 3) -> list[str]:
    ids = []
    with AuditStore(path) as store:
        for r in range(n_runs):
            with store.run("test", "pytest", {"k": r}, "0") as run:
                for i in range(n_answers):
                    _answer(run, f"answer {r}.{i}")
                ids.append(run.run_id)
    return ids


def _tamper(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


def _problems(path: Path) -> list[tuple[str, str]]:
    with AuditStore(path) as store:
        return [(f.run_id, f.problem) for f in store.verify().findings]


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    AuditStore(path).close()
    AuditStore(path).close()
    names, rows = query(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_intact_store_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    _store_with_runs(path)
    with AuditStore(path) as store:
        report = store.verify()
    assert report.ok and report.runs == 2 and report.rows == 2 * (1 + 3 + 1)


def test_edited_row_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    ids = _store_with_runs(path)
    _tamper(path, f"UPDATE answers SET output = 'a better answer' WHERE run_id = '{ids[0]}' AND seq = 2")
    assert _problems(path) == [(ids[0], "edited")]


def test_deleted_row_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    ids = _store_with_runs(path)
    _tamper(path, f"DELETE FROM answers WHERE run_id = '{ids[1]}' AND seq = 2")
    problems = _problems(path)
    assert problems and all(p == (ids[1], "deleted") for p in problems)


def test_deleted_tail_and_whole_run_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    ids = _store_with_runs(path, n_runs=3)
    _tamper(path, f"DELETE FROM events WHERE run_id = '{ids[2]}'")  # the run_end row: a truncated run
    _tamper(path, f"DELETE FROM answers WHERE run_id = '{ids[0]}'; DELETE FROM events WHERE run_id = '{ids[0]}';"
                  f"DELETE FROM runs WHERE run_id = '{ids[0]}'")
    problems = set(_problems(path))
    assert (ids[2], "unclosed") in problems
    assert (ids[1], "run_deleted") in problems


def test_failed_block_closes_the_run_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    with AuditStore(path) as store:
        with pytest.raises(RuntimeError):
            with store.run("test", "pytest", {}, "0") as run:
                _answer(run, "x")
                raise RuntimeError("model crashed")
        assert store.verify().ok
    _, rows = query(path, "SELECT status FROM v_runs")
    assert rows == [("failed",)]


@pytest.mark.parametrize("sql", [
    "INSERT INTO events VALUES ('r', 0, now(), 'x', '{}', NULL, 'h')",
    "UPDATE answers SET output = 'x'",
    "DELETE FROM answers",
    "DROP TABLE answers",
    "CREATE TABLE t (x INT)",
    "COPY answers TO '/tmp/out.csv'",
    "ATTACH '/tmp/other.duckdb'",
    "SELECT 1; DELETE FROM answers",
])
def test_auditor_sql_refuses_writes(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "audit.duckdb"
    _store_with_runs(path, n_runs=1)
    with pytest.raises(ReadOnlyQueryError):
        query(path, sql)
    with AuditStore(path) as store:
        assert store.verify().ok


def test_auditor_sql_reads_views_but_not_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    _store_with_runs(path, n_runs=1, n_answers=2)
    names, rows = query(path, "SELECT question_id, output FROM v_answers ORDER BY output")
    assert names == ["question_id", "output"] and [r[1] for r in rows] == ["answer 0.0", "answer 0.1"]
    with pytest.raises(AuditError, match="query failed"):
        query(path, "SELECT * FROM read_csv('/etc/hostname')")


def test_deleting_the_newest_run_is_caught_against_a_noted_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    ids = _store_with_runs(path, n_runs=2)
    with AuditStore(path) as store:
        head = store.head()
    for table in ("answers", "events", "runs"):
        _tamper(path, f"DELETE FROM {table} WHERE run_id = '{ids[1]}'")
    with AuditStore(path) as store:
        report = store.verify()
        assert report.ok  # invisible from inside the file alone...
        store.check_head(head, report)
        assert [f.problem for f in report.findings] == ["run_deleted"]  # ...but not against the noted head


def test_a_running_run_holds_no_lock_auditors_can_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    reader = ("import sys; from appliance.audit import query; "
              "print(query(sys.argv[1], 'SELECT count(*) FROM answers')[1][0][0])")
    with AuditStore(path) as store, store.run("test", "pytest", {}, "0") as run:
        _answer(run, "first")
        run.flush()
        _answer(run, "not yet flushed")
        # another process (an auditor) reads while the run is open: it sees what was flushed, and no lock error
        out = subprocess.run([sys.executable, "-c", reader, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1"
    _, rows = query(path, "SELECT count(*) FROM answers")
    assert rows == [(2,)]


def test_a_killed_run_is_reopened_and_closed_with_an_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    store = AuditStore(path)
    killed = store.start_run("test", "pytest", {}, "0")
    _answer(killed, "done before the kill")
    killed.flush()
    _answer(killed, "lost with the process")  # never flushed
    store.close()
    _store_with_runs(path, n_runs=1)  # another run starts after the kill
    assert (killed.run_id, "unclosed") in _problems(path)
    with AuditStore(path) as store:
        with store.resumed(killed.run_id) as run:
            _answer(run, "after the resume")
        assert store.verify().ok
        with pytest.raises(AuditError, match="closed"):
            store.reopen_run(killed.run_id)
    _, rows = query(path, f"SELECT output FROM answers WHERE run_id = '{killed.run_id}' ORDER BY seq")
    assert [r[0] for r in rows] == ["done before the kill", "after the resume"]


def test_an_interrupted_run_is_left_resumable_not_sealed(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    with AuditStore(path) as store:
        with pytest.raises(KeyboardInterrupt):
            with store.run("test", "pytest", {}, "0") as run:
                _answer(run, "written")
                run.flush()
                _answer(run, "half-done work, dropped")
                raise KeyboardInterrupt
        assert [f.problem for f in store.verify().findings] == ["unclosed"]
        with store.resumed(run.run_id) as again:
            _answer(again, "after the resume")
        assert store.verify().ok


def test_two_processes_write_runs_at_once_and_the_chains_hold(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    AuditStore(path).close()
    writer = ("import sys\n"
              "from appliance.audit import AuditStore\n"
              "with AuditStore(sys.argv[1]) as store:\n"
              "    for r in range(15):\n"
              "        with store.run('test', sys.argv[2], {}, '0') as run:\n"
              "            for i in range(3):\n"
              "                run.event('step', i=i)\n"
              "                run.flush()\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path), name], stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with AuditStore(path) as store:
        report = store.verify()
    assert report.ok, [str(f) for f in report.findings]
    assert report.runs == 30 and report.rows == 30 * (1 + 3 + 1)


def test_a_run_is_found_by_its_id_or_a_unique_prefix_and_nothing_else(tmp_path: Path) -> None:
    from appliance.errors import UsageError

    path = tmp_path / "audit.duckdb"
    ids = _store_with_runs(path, n_runs=17, n_answers=0)  # 17 ids: two share their first hex digit
    shared = next(i[0] for i in ids if sum(j[0] == i[0] for j in ids) > 1)
    with AuditStore(path) as store:
        assert store.find_run(ids[0]).run_id == ids[0]
        assert store.find_run(ids[1], ("test",)).status == "ok"
        with pytest.raises(UsageError, match="no `ask` run"):
            store.find_run(ids[0], ("ask",))
        with pytest.raises(UsageError, match="ambiguous"):
            store.find_run(shared)
        with pytest.raises(UsageError, match="give a run id"):
            store.find_run("")


def test_a_whole_number_in_a_double_column_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.duckdb"
    with AuditStore(path) as store, store.run("test", "pytest", {}, "0") as run:
        run.append("sdg_filters", pair_id="p", filter="format", passed=True, score=11, threshold=None, detail="ok")
    with AuditStore(path) as store:
        assert store.verify().ok  # 11 is hashed as the 11.0 it reads back as
