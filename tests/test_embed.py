"""The query embedder: onnxruntime over the same weights gives torch's vector (short, long and truncated texts),
the export is made once and reused, and a session whose vectors disagree is not used."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.config import Config
from appliance.retrieval import embed
from appliance.retrieval.embed import Embedder


@pytest.fixture
def embedder(tmp_path: Path, monkeypatch) -> Embedder:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("APPLIANCE_CACHE_DIR", raising=False)
    return Embedder(Config())


def test_a_query_gets_torch_s_vector_through_onnxruntime(embedder: Embedder, tmp_path: Path) -> None:
    texts = ["hello", "What does asyncio.gather return when one of the tasks raises?", "tables " * 600]
    assert embedder._query_session is not None
    assert list((tmp_path / "cache" / "appliance" / "onnx").glob("*.onnx"))
    for text in texts:
        q = embedder.embed_query(text)
        assert q.dtype == np.float32 and q.shape == (embedder.dim,)
        assert float(q @ embedder.embed([text])[0]) > 0.9999
    again = Embedder(Config())           # a second process-lifetime: the cached export is loaded, not redone
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "appliance" / "onnx").glob("*.onnx")}
    assert again._query_session is not None
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "appliance" / "onnx").glob("*.onnx")}


def test_a_disagreeing_export_falls_back_to_torch(embedder: Embedder, monkeypatch) -> None:
    real = embed.Embedder.embed_query

    def skewed(self, text: str) -> np.ndarray:
        v = real(self, text)
        if self.__dict__.get("_query_session") is not None:
            v = np.roll(v, 1)
        return v
    monkeypatch.setattr(embed.Embedder, "embed_query", skewed)
    assert embedder._query_session is None
    text = "a query answered by torch"
    assert float(embedder.embed_query(text) @ embedder.embed([text])[0]) > 0.9999
