"""GGUF export with no network: llama.cpp's own converters, taken from the llama-cpp-python source distribution
already in the bundle (bundles/sdist, checked against bundles/lock.txt), and the binding's llama_model_quantize.

Two forms of an adapter trained here:
- the adapter alone (`convert_lora_to_gguf.py --base <dense copy>`): megabytes, served on top of the untouched
  quantized base (`Llama(lora_path=...)`);
- merged: peft's merge_and_unload on the dense base -> `convert_hf_to_gguf.py` f16 -> quantized (Q8_0 by default).
Each export is registered in the workspace as a model (sha256, lineage); nothing is half-registered on failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from appliance.errors import UsageError
from appliance.models import REPO_ROOT, ModelEntry, sha256_file
from appliance.workspace import Workspace

SDIST_GLOB = "llama_cpp_python-*.tar.gz"
TOOLS = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")
QUANTS = {"F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}   # llama_ftype values


def _locked_sha256(name: str, lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.rstrip().endswith(f"# {name}") and "--hash=sha256:" in line:
            return line.split("--hash=sha256:")[1].split()[0]
    return None


def converter_dir(ws: Workspace, bundles: Path = REPO_ROOT / "bundles") -> Path:
    """llama.cpp's converter scripts and their gguf-py, unpacked once from the bundled sdist (hash-checked)."""
    found = sorted((bundles / "sdist").glob(SDIST_GLOB))
    if not found:
        raise UsageError(f"no llama-cpp-python source distribution in {bundles / 'sdist'}: it carries llama.cpp's "
                         f"GGUF converters; run ./install.sh (staging) or unpack the offline bundle")
    sdist = found[-1]
    digest = sha256_file(sdist)
    locked = _locked_sha256(sdist.name, bundles / "lock.txt")
    if locked != digest:
        raise UsageError(f"{sdist} has sha256 {digest}; bundles/lock.txt says {locked}: the bundle is corrupt")
    target = ws.root / "cache" / "llama-convert" / digest[:16]
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with tarfile.open(sdist) as tar:
            root = tar.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(root)
                       and any(m.name[len(root):].startswith(t) for t in TOOLS) and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(root):]
            tar.extractall(tmp, members=members, filter="data")
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert(tools: Path, args: list[str]) -> None:
    """Run one converter with this Python, offline, its own gguf-py first on the path."""
    env = os.environ | {"PYTHONPATH": str(tools / "gguf-py"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(tools / args[0]), *args[1:]], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"{args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")


def adapter_gguf(tools: Path, adapter_dir: Path, dense: Path, out: Path) -> Path:
    """The PEFT adapter as a GGUF LoRA file (f32: it is small, and nothing is lost)."""
    _convert(tools, ["convert_lora_to_gguf.py", "--base", str(dense), "--outtype", "f32", "--outfile", str(out),
                     str(adapter_dir)])
    return out


def merged_gguf(tools: Path, adapter_dir: Path, dense: Path, work: Path, quant: str, threads: int) -> Path:
    """Base + adapter merged (peft), written as f16 GGUF, then quantized to `quant` by llama.cpp."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = work / "merged-hf"
    model = AutoModelForCausalLM.from_pretrained(str(dense), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(merged_dir)
    AutoTokenizer.from_pretrained(str(dense)).save_pretrained(merged_dir)
    del model
    f16 = work / "merged-f16.gguf"
    _convert(tools, ["convert_hf_to_gguf.py", "--outtype", "f16", "--outfile", str(f16), str(merged_dir)])
    if quant == "F16":
        return f16
    out = work / f"merged-{quant.lower()}.gguf"
    quantize(f16, out, quant, threads)
    return out


def quantize(source: Path, out: Path, quant: str, threads: int) -> None:
    """llama.cpp's quantizer through the binding (tensors whose width does not suit a K-quant fall back)."""
    import llama_cpp

    from appliance.llm.cpu import ensure_loaded

    ensure_loaded(source)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    params.nthread = threads
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0 or not out.is_file():
        raise UsageError(f"llama.cpp could not quantize {source.name} to {quant}")


def find_adapter(ws: Workspace, name: str) -> tuple[ModelEntry, Path]:
    """A PEFT adapter trained in this workspace (verified), by name."""
    entry, path = ws.models.verified_path(name)
    if entry.role != "adapter" or entry.lineage.get("format") == "gguf-lora":
        raise UsageError(f"{name!r} is not an adapter trained here (`appliance models` lists them)")
    return entry, path


def base_of(ws: Workspace, adapter: ModelEntry) -> tuple[ModelEntry, Path]:
    """The base an adapter was trained on, verified: refused, with both hashes, if the bytes differ now."""
    base, path = ws.models.verified_path(adapter.lineage["base"])
    if base.sha256 != adapter.lineage["base_sha256"]:
        raise UsageError(f"adapter {adapter.name} was trained on {adapter.lineage['base']} with sha256 "
                         f"{adapter.lineage['base_sha256']}; that model is now {base.sha256}")
    return base, path


def lineage(adapter: ModelEntry, fmt: str, **more: Any) -> dict[str, Any]:
    return {"format": fmt, "adapter": adapter.name, "adapter_sha256": adapter.sha256, "base": adapter.lineage["base"],
            "base_sha256": adapter.lineage["base_sha256"], "dataset_id": adapter.lineage.get("dataset_id"), **more}
