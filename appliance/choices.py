"""Every closed list of names the product accepts, declared once: the config validates against these types, the
CLI offers them as choices, and the code that acts on a name imports it from here."""
from __future__ import annotations

from typing import Literal, get_args

Chunker = Literal["structure", "window"]
RetrievalMode = Literal["vector", "fts", "hybrid"]
Rerank = Literal["none", "sentence"]
ContextOrder = Literal["best-first", "best-last"]
Strategy = Literal["single", "best-of-n", "self-consistency", "council"]
Condition = Literal["closed-book", "oracle", "rag"]     # in the order a question runs through them
SDGKind = Literal["fact", "number", "table", "procedure", "definition", "free"]
ExportFormat = Literal["prompt-completion", "chat", "alpaca", "openai"]
TrainBackend = Literal["auto", "cpu", "gpu"]
Precision = Literal["auto", "bf16", "fp32"]

CHUNKERS: tuple[str, ...] = get_args(Chunker)
RETRIEVAL_MODES: tuple[str, ...] = get_args(RetrievalMode)
RERANKS: tuple[str, ...] = get_args(Rerank)
CONTEXT_ORDERS: tuple[str, ...] = get_args(ContextOrder)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
CONDITIONS: tuple[str, ...] = get_args(Condition)
SDG_KINDS: tuple[str, ...] = get_args(SDGKind)
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
TRAIN_BACKENDS: tuple[str, ...] = get_args(TrainBackend)
