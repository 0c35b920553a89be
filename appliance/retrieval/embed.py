"""The local embedder (all-MiniLM-L6-v2 from models/, by path) and its tokenizer, used to size chunks; single
queries go through onnxruntime (the same weights exported once), four times faster than torch for one short text."""
from __future__ import annotations

import os
import tempfile
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np

from appliance.config import Config
from appliance.models import ModelCatalog, ModelEntry, cache_dir


class Embedder:
    """sentence-transformers on the CPU; vectors are L2-normalised (cosine = dot product)."""

    def __init__(self, cfg: Config) -> None:
        self.entry: ModelEntry
        self.entry, self.path = ModelCatalog(cfg.models_dir).verified_path(cfg.models.embedder)
        self.batch = cfg.retrieval.embed_batch

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.path), device="cpu", local_files_only=True)

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(self.path) / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return tok

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads (special tokens included); the rest of a text is never embedded."""
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def count(self, text: str) -> int:
        """Word pieces of `text`, without the two special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every word piece of `text`."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).offsets)

    def embed_query(self, text: str) -> np.ndarray:
        """One normalised float32 vector for a search query: onnxruntime where the export agrees with torch, else
        torch."""
        if self._query_session is None:
            return self.embed([text])[0]
        enc = self._query_tokenizer.encode(text)
        feed = {"input_ids": [enc.ids], "attention_mask": [enc.attention_mask], "token_type_ids": [enc.type_ids]}
        hidden = self._query_session.run(None, {k: np.asarray(v, dtype=np.int64) for k, v in feed.items()})[0][0]
        vec = hidden.mean(axis=0)                       # mean pooling; one text, so every token counts
        return (vec / (np.linalg.norm(vec) + 1e-12)).astype(np.float32)

    @cached_property
    def _query_tokenizer(self):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(self.path) / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_tokens)
        tok.no_padding()
        return tok

    @cached_property
    def _query_session(self):
        """An onnxruntime session over the embedder's transformer, exported from these weights once and cached by
        their sha256 (~/.cache/appliance/onnx); None (torch is used) if the export fails or its vector for a probe
        text differs from torch's (another pooling, say)."""
        try:
            import onnxruntime as ort

            path = _onnx_export(self)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = _threads()
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception:   # noqa: BLE001 - only speed is at stake: torch answers the same
            return None
        probe = "How are passages retrieved for a question about the documents?"
        self.__dict__["_query_session"] = session
        if float(self.embed_query(probe) @ self.embed([probe])[0]) < 0.9999:
            return None
        return session

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 vectors, one row per text, normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode(texts, batch_size=self.batch, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def _threads() -> int:
    import torch

    return torch.get_num_threads() or os.cpu_count() or 1


def _onnx_export(embedder: Embedder) -> Path:
    """The transformer of `embedder` as ONNX (input ids, mask, token types -> last hidden state), made once."""
    cache = cache_dir() / "onnx"
    out = cache / f"{embedder.entry.sha256[:16]}.onnx"
    if out.is_file():
        return out
    import torch

    class Body(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    body = Body(embedder.model[0].auto_model).eval()
    ids = torch.ones((1, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".onnx")
    os.close(fd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(body, (ids, ids, torch.zeros_like(ids)), tmp, input_names=names,
                          output_names=["hidden"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names + ["hidden"]},
                          dynamo=False, opset_version=17)
    os.replace(tmp, out)
    return out
