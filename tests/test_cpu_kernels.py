"""Choosing llama.cpp's CPU backend: best first, a variant that fails its probe skipped with the reason, the choice
remembered per build and CPU, forcing by name; and the real build's variants probed in child processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import UsageError
from appliance.llm import cpu
from appliance.models import REPO_ROOT

TINY = REPO_ROOT / "models" / "tinycoder-random.gguf"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("APPLIANCE_CACHE_DIR", raising=False)
    monkeypatch.delenv(cpu.FORCE_ENV, raising=False)
    return tmp_path / "cache" / "appliance" / "llama-cpu.json"


def fake_variants(tmp_path: Path, names: list[str]) -> list[cpu.Variant]:
    out = []
    for i, name in enumerate(names):
        path = tmp_path / f"libggml-cpu-{name}.so"
        path.write_bytes(name.encode())
        out.append(cpu.Variant(name, path, 100 - i))
    return out


def test_the_best_variant_that_survives_its_probe_is_chosen_and_remembered(tmp_path, cache) -> None:
    found = fake_variants(tmp_path, ["amx", "avx512", "avx2"])
    tried = []

    def probe(v: cpu.Variant, model: Path) -> str:
        tried.append(v.name)
        return "killed by SIGILL" if v.name == "amx" else ""

    choice = cpu.choose(found, TINY, probe)
    assert (choice.name, choice.how, tried) == ("avx512", "probed", ["amx", "avx512"])
    assert choice.rejected == {"amx": "killed by SIGILL"} and "amx (killed by SIGILL)" in choice.describe()
    assert json.loads(cache.read_text())

    def must_not_probe(v: cpu.Variant, model: Path) -> str:
        raise AssertionError("a remembered choice is not probed again")
    again = cpu.choose(found, TINY, must_not_probe)
    assert (again.name, again.how, again.rejected) == ("avx512", "remembered", {"amx": "killed by SIGILL"})

    found[1].path.write_bytes(b"rebuilt, another size")      # another build: probed again
    assert cpu.choose(found, TINY, probe).how == "probed"


def test_forcing_a_variant_by_name_and_nothing_that_runs(tmp_path, cache, monkeypatch) -> None:
    found = fake_variants(tmp_path, ["avx512", "avx2"])
    monkeypatch.setenv(cpu.FORCE_ENV, "avx2")
    assert cpu.choose(found, TINY, lambda v, m: "never asked").how == "forced"
    monkeypatch.setenv(cpu.FORCE_ENV, "sse3")
    with pytest.raises(UsageError, match="avx512, avx2"):
        cpu.choose(found, TINY, lambda v, m: "")
    monkeypatch.delenv(cpu.FORCE_ENV)
    with pytest.raises(UsageError, match="avx512: exit 1; avx2: exit 1"):
        cpu.choose(found, TINY, lambda v, m: "exit 1")
    assert not cache.exists()


def _child(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not cpu.variants(), reason="this llama.cpp build has one built-in CPU backend")
def test_the_build_s_variants_are_probed_for_real_and_the_chosen_one_generates(tmp_path) -> None:
    """Fresh processes with an empty cache: the first probes (every better variant that fails names its reason),
    the second remembers; both load the choice and generate. A probe of a missing model fails with a reason."""
    code = f"""
import json, llama_cpp
from dataclasses import asdict
from appliance.llm.cpu import ensure_loaded
c = ensure_loaded(__import__('pathlib').Path({str(TINY)!r}))
llm = llama_cpp.Llama(model_path={str(TINY)!r}, n_ctx=256, verbose=False)
out = llm.create_completion('def add(a, b):', max_tokens=4, temperature=0.0)
print(json.dumps({{**asdict(c), 'tokens': out['usage']['completion_tokens']}}))
"""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = _child(code, env)
    names = [v.name for v in cpu.variants()]
    assert first["how"] == "probed" and first["name"] in names and first["tokens"] > 0
    assert list(first["rejected"]) == names[:names.index(first["name"])]
    assert all(first["rejected"].values())
    second = _child(code, env)
    assert (second["how"], second["name"]) == ("remembered", first["name"]) and second["tokens"] > 0
    portable = _child(code, {**env, cpu.FORCE_ENV: cpu.PORTABLE})
    assert (portable["how"], portable["name"]) == ("forced", cpu.PORTABLE)
    assert cpu.probe(cpu.variants()[-1], tmp_path / "missing.gguf")
