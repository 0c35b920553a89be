"""The dense base a LoRA adapter is trained against: the bundled GGUF dequantized by transformers (`gguf_file=`),
so the adapter learns against exactly the weights llama.cpp serves, cached once per GGUF sha256 in the workspace
(workspace/cache/dense/SHA16/: safetensors, config, tokenizer, source.json). Loading a 0.5B GGUF takes about a
minute; the cached copy loads in seconds and is what export reads as `--base`."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from appliance.errors import UsageError
from appliance.models import ModelEntry
from appliance.progress import Progress
from appliance.workspace import Workspace

SOURCE = "source.json"


def dense_dir(ws: Workspace, entry: ModelEntry) -> Path:
    """Where the dense copy of a GGUF model lives (whether or not it exists yet)."""
    return ws.root / "cache" / "dense" / entry.sha256[:16]


def dense_base(ws: Workspace, entry: ModelEntry, gguf: Path, progress: Progress | None = None) -> Path:
    """The dense copy of the GGUF at `gguf` (verified by the caller), made now if it is not cached. A copy made for
    other bytes (its source.json names another sha256) is refused rather than used."""
    target = dense_dir(ws, entry)
    if (target / SOURCE).is_file():
        made_from = json.loads((target / SOURCE).read_text())["sha256"]
        if made_from != entry.sha256:
            raise UsageError(f"{target} was made from a GGUF with sha256 {made_from}, not {entry.sha256} "
                             f"({entry.name}); delete it and run again")
        return target
    if not entry.file.endswith(".gguf"):
        raise UsageError(f"model {entry.name!r} is not a GGUF file; training starts from a GGUF generator")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (progress or Progress()).note(f"dequantizing {entry.name} ({gguf.name}) for training; once per model "
                                  f"(about a minute for 0.5B parameters)", "train")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None                      # the GGUF "quantizer" only dequantized; saving needs it gone
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE).write_text(json.dumps({"model": entry.name, "sha256": entry.sha256, "gguf": gguf.name,
                                              "chat_template": entry.chat_template}, indent=1))
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
