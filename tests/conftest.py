"""Shared fixtures: every test gets its own workspace through $APPLIANCE_WORKSPACE (nothing leaks between tests)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.models import DEFAULT_MODELS_DIR, REPO_ROOT

TEST_MODEL = "smollm2-135m-instruct"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace directory, made the default for the CLI."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("APPLIANCE_WORKSPACE", str(ws))
    for name in [k for k in __import__("os").environ if k.startswith("APPLIANCE__")]:
        monkeypatch.delenv(name)
    return ws


@pytest.fixture
def cli(workspace: Path, capsys: pytest.CaptureFixture):
    """Run the CLI in-process: returns (exit code, stdout, stderr); with --json, stdout is parsed."""

    def run(*args: str) -> tuple[int, object, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, (json.loads(out) if "--json" in args and out.strip() else out), err

    return run


def staged_tree(dest: Path, *, copy_wheel: str | None = None, copy_model: str | None = None) -> Path:
    """A copy of this checkout's tracked files with bundles/ and models/ linked in (a file named by
    copy_wheel / copy_model is copied instead of linked, so a test can corrupt it without touching the original)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.split()
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    (dest / "bundles" / "wheels").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "bundles" / "install-lock.txt", dest / "bundles" / "install-lock.txt")
    for whl in (REPO_ROOT / "bundles" / "wheels").iterdir():
        link = dest / "bundles" / "wheels" / whl.name
        shutil.copy2(whl, link) if whl.name == copy_wheel else link.symlink_to(whl)
    for item in DEFAULT_MODELS_DIR.iterdir():
        if item.name == "manifest.toml":
            continue
        link = dest / "models" / item.name
        shutil.copy2(item, link) if item.name == copy_model else link.symlink_to(item)
    return dest


def flip_byte(path: Path, offset: int = 1000) -> None:
    """Flip one byte of a file in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


PYTHON = sys.executable


def poll_store(ws: Path, sql: str, proc: subprocess.Popen, timeout: float = 600) -> str | None:
    """The first value `sql` returns from the workspace's audit store, polled read-only every second while `proc`
    runs; None if it ends (or time runs out) first. The writer holds the file briefly, so a failed open or query
    is tried again."""
    import duckdb

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        try:
            con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
        except duckdb.Error:
            continue
        try:
            got = con.execute(sql).fetchall()
        except duckdb.Error:
            got = []
        finally:
            con.close()
        if got:
            return got[0][0]
    return None
