"""The CLI as a user drives it: init, doctor, models, ask with the small bundled model, audit."""
import json
from pathlib import Path

import duckdb
import pytest

from conftest import TEST_MODEL


def test_init_writes_config_and_audit_store(cli, workspace: Path) -> None:
    code, out, _ = cli("init", "--json")
    assert code == 0 and Path(out["config"]).is_file() and Path(out["audit"]).is_file()
    assert "[llm]" in (workspace / "config.toml").read_text()


def test_doctor_reports_ready(cli) -> None:
    code, out, _ = cli("doctor", "--json")
    failed = [c for c in out["checks"] if c["status"] == "fail"]
    assert code == 0 and out["ok"] and not failed
    names = {c["name"] for c in out["checks"]}
    assert {"generator backend", "offline settings", f"model {TEST_MODEL}"} <= names


def test_models_lists_the_manifest(cli) -> None:
    code, out, _ = cli("models", "--json")
    assert code == 0 and {m["name"] for m in out} >= {TEST_MODEL, "qwen2.5-coder-0.5b-instruct", "all-minilm-l6-v2"}


def test_ask_answers_and_lands_in_the_audit_store(cli, workspace: Path) -> None:
    code, out, _ = cli("ask", "--no-rag", "What is the capital of France?", "--model", TEST_MODEL, "--json")
    assert code == 0 and out["answer"] and out["run_id"]
    con = duckdb.connect(str(workspace / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT model_name, model_sha256, template_id, output, prompt, params_json, prompt_tokens "
                       "FROM answers WHERE run_id = ?", [out["run_id"]]).fetchall()
    con.close()
    assert len(rows) == 1
    model, sha, template, output, prompt, params, prompt_tokens = rows[0]
    assert (model, sha, output) == (TEST_MODEL, out["model_sha256"], out["answer"])
    assert template == "closed-book/v1" and "capital of France" in prompt and prompt_tokens > 0
    assert '"seed": 0' in params and '"temperature": 0.0' in params
    code, verify, _ = cli("audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["findings"] == [] and verify["runs"] == 1


def test_greedy_answers_are_reproducible(cli) -> None:
    answers = {cli("ask", "--no-rag", "Name a primary colour.", "--model", TEST_MODEL, "--json")[1]["answer"]
               for _ in range(2)}
    assert len(answers) == 1


def test_ask_with_rag_says_what_is_missing(cli) -> None:
    code, _, err = cli("ask", "What does the manual say?", "--model", TEST_MODEL)
    assert code == 2 and "--no-rag" in err


def test_audit_sql_refuses_writes_from_the_cli(cli) -> None:
    cli("init")
    code, _, err = cli("audit", "sql", "DELETE FROM answers")
    assert code == 2 and "read-only" in err
    code, out, _ = cli("audit", "sql", "SELECT count(*) AS n FROM v_runs", "--json")
    assert code == 0 and out == [{"n": 0}]


def test_audit_verify_exits_nonzero_on_tampering(cli, workspace: Path) -> None:
    from appliance.ask import ask
    from appliance.llm.fake import FakeGenerator
    from appliance.workspace import open_workspace

    ask(open_workspace(workspace), "2+2?", rag=False, generator=FakeGenerator(["4"]))
    con = duckdb.connect(str(workspace / "audit.duckdb"))
    con.execute("UPDATE answers SET output = '5'")
    con.close()
    code, out, _ = cli("audit", "verify", "--json")
    assert code == 1 and not out["ok"] and out["findings"][0]["problem"] == "edited"


def test_unknown_model_is_a_clear_error(cli) -> None:
    code, _, err = cli("ask", "--no-rag", "hi", "--model", "gpt-9")
    assert code == 2 and "unknown model" in err


def test_global_options_before_the_subcommand_are_kept(cli, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    code, out, _ = cli("--workspace", str(other), "--json", "init")
    assert code == 0 and out["workspace"] == str(other) and (other / "config.toml").is_file()
    code, out, _ = cli("--set", "llm.n_ctx=1024", "init", "--workspace", str(tmp_path / "third"), "--json")
    assert code == 0 and "n_ctx = 1024" in (tmp_path / "third" / "config.toml").read_text()


def test_user_errors_exit_2_but_bugs_keep_their_traceback(cli, monkeypatch) -> None:
    import appliance.cli

    code, _, err = cli("eval", "answers", "--questions", "/nonexistent.jsonl")
    assert code == 2 and "no golden set" in err
    monkeypatch.setattr(appliance.cli, "cmd_models", lambda args: int("not a number"))
    with pytest.raises(ValueError, match="not a number"):
        cli("models")


def test_progress_bars_on_a_terminal_and_nothing_with_json(cli, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from appliance.models import REPO_ROOT

    corpus = REPO_ROOT / "samples" / "corpus"
    cmd = [sys.executable, "-m", "appliance.cli", "--workspace", str(tmp_path / "on-a-terminal"), "ingest",
           str(corpus / "price-list-2026.csv")]
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stderr=slave, stdout=subprocess.DEVNULL, env=os.environ | {"COLUMNS": "120"})
    os.close(slave)
    seen = b""
    while True:  # read while it runs (a full terminal buffer would block it); EIO once it has exited
        try:
            block = os.read(master, 65536)
        except OSError:
            break
        if not block:
            break
        seen += block
    os.close(master)
    assert proc.wait(timeout=300) == 0
    screen = seen.decode(errors="replace")
    assert "ingest" in screen and "1/1" in screen and "━" in screen  # a rich bar, drawn on the terminal
    code, out, err = cli("ingest", str(corpus / "price-list-2026.csv"), "--json")
    assert code == 0 and err == "" and out["counts"] == {"ingested": 1}


def test_checkpoints_and_noted_heads_through_the_cli(cli, workspace: Path, tmp_path: Path) -> None:
    from appliance.ask import ask
    from appliance.llm.fake import FakeGenerator
    from appliance.workspace import open_workspace

    ask(open_workspace(workspace), "2+2?", rag=False, generator=FakeGenerator(["4"]))
    key, cps = tmp_path / "auditor" / "key", tmp_path / "auditor" / "checkpoints.jsonl"
    code, made, _ = cli("audit", "keygen", "--out", str(key), "--json")
    assert code == 0 and Path(made["public_key"]).is_file()
    code, _, err = cli("audit", "checkpoint", "--file", str(workspace / "cp.jsonl"))
    assert code == 2 and "inside the workspace" in err
    code, cp, _ = cli("audit", "checkpoint", "--file", str(cps), "--sign", str(key), "--json")
    assert code == 0 and cp["key_id"] == made["key_id"] and len(cps.read_text().splitlines()) == 1
    code, out, _ = cli("audit", "verify", "--checkpoints", str(cps), "--pubkey", made["public_key"],
                       "--expect-head", cp["head"], "--json")
    assert code == 0 and out["ok"] and not out["findings"] and out["checkpoints"] == 1
    from appliance.audit import AuditStore
    with AuditStore(workspace / "audit.duckdb") as store:  # a run still going (or killed) does not block a checkpoint
        store.start_run("eval-answers", "elsewhere", {}, "0").flush()
    code, _, _ = cli("audit", "checkpoint", "--file", str(cps), "--sign", str(key), "--json")
    assert code == 0 and len(cps.read_text().splitlines()) == 2
    con = duckdb.connect(str(workspace / "audit.duckdb"))  # the ledger removed: its rows are unledgered, and
    con.execute("DELETE FROM ledger")                       # the checkpoint and the noted head are gone with it
    con.close()
    code, out, _ = cli("audit", "verify", "--json")
    assert code == 1 and {f["problem"] for f in out["findings"]} == {"unledgered", "unclosed"}
    code, out, _ = cli("audit", "verify", "--checkpoints", str(cps), "--pubkey", made["public_key"],
                       "--expect-head", cp["head"], "--json")
    assert code == 1 and {"truncated", "rewritten"} <= {f["problem"] for f in out["findings"]}
    code, _, err = cli("audit", "checkpoint", "--file", str(cps), "--sign", str(key))
    assert code == 1 and "no checkpoint made" in err and len(cps.read_text().splitlines()) == 2  # not vouched for
    from test_audit import _forge  # the whole store made self-consistent again by someone who can write it:
    _forge(workspace / "audit.duckdb", "UPDATE answers SET output = '5'", reledger=True)
    code, out, _ = cli("audit", "verify", "--json")
    assert {f["problem"] for f in out["findings"]} == {"unclosed"}  # the file alone cannot tell...
    code, _, err = cli("audit", "checkpoint", "--file", str(cps), "--sign", str(key))
    assert code == 1 and "rewritten" in err and len(cps.read_text().splitlines()) == 2  # ...the earlier checkpoints can
    cps.write_text("not json\n")
    code, _, err = cli("audit", "verify", "--checkpoints", str(cps))
    assert code == 2 and "not a checkpoint line" in err
