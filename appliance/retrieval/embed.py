"""The local embedder (all-MiniLM-L6-v2 from models/, by path) and its tokenizer, used to size chunks."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from appliance.config import Config
from appliance.models import ModelCatalog, ModelEntry


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

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 vectors, one row per text, normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.model.encode(texts, batch_size=self.batch, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
