"""Which of llama.cpp's CPU backends runs on this machine.

The bundled llama.cpp carries one CPU backend per x86 instruction-set level (libggml-cpu-haswell.so ...
-sapphirerapids.so; bundles/llama-cpu-variants.cmake). ggml would load the highest-scoring one the CPU claims to
support, but a claim is not proof: on a CPU that reports AMX inside a VM that does not grant its tile state, the AMX
build dies with SIGILL at the first matrix product. So the candidates, best first, are each run once in a child
process on a real model (a prompt, then a few decoded tokens); the first that survives is loaded, and the choice is
remembered per build and CPU (llama-cpu.json in the user's appliance cache). APPLIANCE_LLAMA_CPU=NAME forces one (no probe).
A build without variants (one built-in CPU backend) needs none of this.

    python -m appliance.llm.cpu VARIANT.so MODEL.gguf     the probe itself (exit 0: it ran)
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.errors import UsageError
from appliance.models import cache_dir, write_atomic

FORCE_ENV = "APPLIANCE_LLAMA_CPU"
PORTABLE = "haswell"          # the AVX2 level the bundle was built for before it had variants: the bench's baseline
PROBE_TIMEOUT_S = 300
_PROBE_PROMPT = ("The appliance answers questions from the customer's documents and cites the passages it used. " * 6
                 + "Summarise the sentence above in five words:")


@dataclass(frozen=True)
class Variant:
    """One CPU backend library and ggml's own score for it on this CPU (0: the CPU lacks its instructions)."""

    name: str
    path: Path
    score: int


@dataclass
class Choice:
    """The CPU backend in use and how it was chosen; `rejected` names each better one that failed its probe."""

    name: str
    how: str                               # probed | remembered | forced | built-in
    path: str = ""
    probe_model: str = ""
    rejected: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        said = {"probed": "probed now", "remembered": "probed earlier", "forced": f"forced by {FORCE_ENV}",
                "built-in": "the build's one CPU backend"}[self.how]
        out = f"{self.name} ({said})"
        if self.rejected:
            out += "; failed their probe: " + ", ".join(f"{n} ({why})" for n, why in self.rejected.items())
        return out


_loaded: Choice | None = None
_lock = threading.Lock()


def lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise UsageError("llama_cpp is not installed: run ./install.sh")
    return Path(spec.origin).parent / "lib"


def variants() -> list[Variant]:
    """The CPU backends in the build that this CPU can run by ggml's score, best first ([] for a build without)."""
    found = []
    for path in sorted(lib_dir().glob("libggml-cpu-*.so")):
        lib = ctypes.CDLL(str(path))       # what ggml's own loader does: the score function checks cpuid only
        lib.ggml_backend_score.restype = ctypes.c_int
        score = int(lib.ggml_backend_score())
        if score > 0:
            found.append(Variant(path.name[len("libggml-cpu-"):-len(".so")], path, score))
    return sorted(found, key=lambda v: -v.score)


def probe(variant: Variant, model: Path) -> str:
    """Run `variant` on `model` in a child process: '' when it worked, else why not."""
    try:
        r = subprocess.run([sys.executable, "-m", "appliance.llm.cpu", str(variant.path), str(model)],
                           capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no answer in {PROBE_TIMEOUT_S} s"
    if r.returncode == 0:
        return ""
    if r.returncode < 0:
        return f"killed by {signal.Signals(-r.returncode).name}"
    return (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:200]


def _cache_path() -> Path:
    return cache_dir() / "llama-cpu.json"


def _machine_key(found: list[Variant]) -> str:
    """The build (its variant libraries) and the CPU (its flags): a choice holds while both stay the same."""
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "") \
        if Path("/proc/cpuinfo").is_file() else ""
    build = [(v.name, v.path.stat().st_size, v.path.stat().st_mtime_ns) for v in found]
    return hashlib.sha256(json.dumps([str(lib_dir()), build, flags]).encode()).hexdigest()[:16]


def _remembered(key: str) -> Choice | None:
    try:
        entry = json.loads(_cache_path().read_text()).get(key)
    except (OSError, ValueError):
        return None
    return Choice(**{**entry, "how": "remembered"}) if entry else None


def _remember(key: str, choice: Choice) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        known[key] = asdict(choice)
        write_atomic(path, json.dumps(known, indent=1))
    except OSError:
        pass                               # a read-only home: probe again next time, nothing is wrong


def choose(found: list[Variant], model: Path, run_probe=probe) -> Choice:
    """The best variant that runs `model` here: forced, remembered, or probed best first."""
    forced = os.environ.get(FORCE_ENV)
    if forced:
        by_name = {v.name: v for v in found}
        if forced not in by_name:
            raise UsageError(f"{FORCE_ENV}={forced}: this CPU and build offer {', '.join(by_name) or 'none'}")
        return Choice(forced, "forced", str(by_name[forced].path))
    key = _machine_key(found)
    known = _remembered(key)
    if known is not None and Path(known.path).is_file():
        return known
    rejected: dict[str, str] = {}
    for v in found:
        why = run_probe(v, model)
        if not why:
            choice = Choice(v.name, "probed", str(v.path), str(model), rejected)
            _remember(key, choice)
            return choice
        rejected[v.name] = why
    detail = "; ".join(f"{n}: {why}" for n, why in rejected.items()) or "none is built for this CPU"
    raise UsageError(f"no llama.cpp CPU backend runs on this machine: {detail}")


def ensure_loaded(model: Path) -> Choice:
    """Load the chosen CPU backend into this process once (before the first llama.cpp model); `model` is the GGUF
    a probe runs when nothing is remembered yet."""
    global _loaded
    with _lock:
        if _loaded is None:
            found = variants()
            if not found:
                _loaded = Choice("built-in", "built-in")
            else:
                choice = choose(found, model)
                _load(Path(choice.path))
                _loaded = choice
                for gpu in _gpu_backends():   # a build with -DGGML_CUDA=ON (etc.) beside the variants
                    _load(gpu)
        return _loaded


def _gpu_backends() -> list[Path]:
    return [p for p in sorted(lib_dir().glob("libggml-*.so"))
            if not p.name.startswith(("libggml-cpu-", "libggml-base."))]


def _load(path: Path) -> None:
    """Register `path` with the ggml that libllama uses: the wheel holds libggml.so and libggml.so.0 as two copies
    (zip has no links), and libllama links the second by its soname; registering with the first does nothing."""
    import llama_cpp  # noqa: F401  (loads libllama and, beside it, the libggml it links)
    from llama_cpp._logger import set_verbose

    set_verbose(False)          # as every Llama(verbose=False) here: ggml's "loaded CPU backend" line is not news
    soname = min(lib_dir().glob("libggml.so.*"), key=lambda p: len(p.name))
    fn = ctypes.CDLL(str(soname)).ggml_backend_load
    fn.argtypes, fn.restype = [ctypes.c_char_p], ctypes.c_void_p
    if not fn(str(path).encode()):
        raise UsageError(f"llama.cpp could not load its CPU backend {path}")


def _probe_main(variant: str, model: str) -> int:
    import llama_cpp

    _load(Path(variant))
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_batch=128, n_threads=os.cpu_count() or 1, verbose=False)
    llm.create_completion(_PROBE_PROMPT, max_tokens=8, temperature=0.0)
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(*sys.argv[1:3]))
