"""install.sh's offline half on copies of this staged tree: tampering is refused, and a whole install works
with the network namespace removed (unshare -n)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_MODEL, flip_byte, staged_tree


def _install(tree: Path, *args: str, offline_ns: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = ["./install.sh", *args]
    if offline_ns:
        cmd = ["unshare", "-n", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE", "VIRTUAL_ENV"))}
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=timeout, env=env)


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def _smallest_wheel() -> str:
    wheels = Path(__file__).resolve().parent.parent / "bundles" / "wheels"
    return min(wheels.glob("*.whl"), key=lambda p: p.stat().st_size).name


def test_flipped_byte_in_a_wheel_stops_the_install(tmp_path: Path) -> None:
    name = _smallest_wheel()
    tree = staged_tree(tmp_path / "tree", copy_wheel=name)
    flip_byte(tree / "bundles" / "wheels" / name, offset=100)
    proc = _install(tree, "--offline")
    assert proc.returncode != 0
    assert name in proc.stderr and "sha256" in proc.stderr
    assert not (tree / ".venv").exists(), "nothing may be installed from a tampered bundle"


def test_flipped_byte_in_a_weight_stops_the_install(tmp_path: Path) -> None:
    tree = staged_tree(tmp_path / "tree", copy_model="tinycoder-random.gguf")
    flip_byte(tree / "models" / "tinycoder-random.gguf")
    proc = _install(tree, "--offline")
    assert proc.returncode != 0
    assert "tinycoder-random.gguf" in proc.stderr and "sha256" in proc.stderr
    assert not (tree / ".venv").exists()


def test_unstaged_tree_is_refused_offline_with_a_next_step(tmp_path: Path) -> None:
    tree = staged_tree(tmp_path / "tree")
    (tree / "bundles" / "install-lock.txt").unlink()
    proc = _install(tree, "--offline")
    assert proc.returncode != 0 and "never staged" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="unshare -n needs root (or user namespaces) on this machine")
def test_install_and_ask_with_no_network_at_all(tmp_path: Path) -> None:
    tree = staged_tree(tmp_path / "tree")
    proc = _install(tree, offline_ns=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ready" in proc.stdout
    again = _install(tree, offline_ns=True)
    assert again.returncode == 0 and "already matches" in again.stderr
    ask = subprocess.run(["unshare", "-n", ".venv/bin/appliance", "ask", "--no-rag", "What is 2+2?", "--model",
                          TEST_MODEL, "--json"], cwd=tree, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")})
    assert ask.returncode == 0, ask.stderr
    assert json.loads(ask.stdout)["run_id"]
    assert (tree / "workspace" / "audit.duckdb").is_file()
