"""install.sh's offline half on copies of this staged tree: tampering is refused, and a whole install works
with the network namespace removed (unshare -n)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_MODEL, flip_byte, staged_tree


def _install(tree: Path, *args: str, offline_ns: bool = False, timeout: int = 900,
             env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = ["./install.sh", *args]
    if offline_ns:
        cmd = ["unshare", "-n", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE", "VIRTUAL_ENV"))} | (env_extra or {})
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


def test_the_cuda_set_is_taken_where_nvidia_smi_lists_a_gpu_and_the_set_is_staged(tmp_path: Path) -> None:
    """install.sh's choice of wheel set: the CPU set without a GPU; with one, the CUDA set only where it is staged
    (else the CPU set and how to stage it); APPLIANCE_WHEELS forces either, and gpu without the set is refused."""
    tree = staged_tree(tmp_path / "tree")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    with_gpu = {"PATH": f"{fake}:{os.environ['PATH']}"}
    no_gpu = _install(tree, "--which")
    assert no_gpu.returncode == 0 and no_gpu.stdout.strip() == "cpu", no_gpu.stderr
    unstaged = _install(tree, "--which", env_extra=with_gpu)
    assert unstaged.stdout.strip() == "cpu" and "--stage-gpu" in unstaged.stderr
    forced = _install(tree, "--which", env_extra={"APPLIANCE_WHEELS": "gpu"})
    assert forced.returncode != 0 and "not staged" in forced.stderr
    (tree / "bundles" / "install-lock-gpu.txt").write_text("# staged\n")
    staged = _install(tree, "--which", env_extra=with_gpu)
    assert staged.returncode == 0 and staged.stdout.strip() == "gpu", staged.stderr
    cpu = _install(tree, "--which", env_extra=with_gpu | {"APPLIANCE_WHEELS": "cpu"})
    assert cpu.stdout.strip() == "cpu"


def test_the_cuda_lock_keeps_the_cpu_locks_versions_but_where_unsloth_needs_others() -> None:
    """bundles/lock-gpu.txt against lock.txt: the same version of every package both hold, except those named in
    GPU_REQUIREMENTS / GPU_UNPINNED; torch is the CUDA build; Unsloth and its CUDA kernels are in it. Re-locking one
    without the other fails here."""
    from appliance.bundle import GPU_LOCK, GPU_REQUIREMENTS, GPU_UNPINNED, LOCK, _pins

    cpu, gpu = _pins(LOCK), _pins(GPU_LOCK)
    free = set(GPU_REQUIREMENTS) | set(GPU_UNPINNED)
    assert {n: (v, gpu[n]) for n, v in cpu.items() if n in gpu and n not in free and gpu[n] != v} == {}
    assert set(cpu) - set(gpu) == set(), "every package of the CPU set is in the CUDA set"
    assert cpu["torch"] == gpu["torch"] + "+cpu", "the same torch, its CUDA build"
    assert {"unsloth", "unsloth-zoo", "bitsandbytes", "triton"} <= set(gpu)


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
