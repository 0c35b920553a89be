"""Retrieval: vector, full-text (BM25) and hybrid search with reciprocal rank fusion, an optional local rerank,
identical-content collapsing, and access groups enforced inside every query: the groups asked for, clamped to what
the OS user running it is entitled to (appliance/access.py)."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from appliance.access import Entitlement, entitlement
from appliance.choices import RETRIEVAL_MODES
from appliance.config import Config
from appliance.errors import UsageError
from appliance.retrieval.embed import Embedder
from appliance.retrieval.index import ChunkIndex
from appliance.text import normalise, sentences

# A bridge question names one thing and asks about another that the first passage names: in technical documents
# that link is mostly an identifier (a dotted name, a function) which the question itself does not contain.
HOP_TERM = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|\b[A-Za-z_]\w*(?=\(\))")
HOP_TERMS = 4           # identifiers added to the second query at most
HOP_KEEP = 2            # first-hop hits that stay ahead of the second hop's
# MMR picks the k hits from the best max(MMR_POOL, 4k) fused candidates, whose vectors it reads (the searches no
# longer return vectors: at 100k chunks that cut hybrid p50 ~10 %). Every hit was the same as MMR over all 100
# candidates on the devset, its extra set and the samples (3 modes, k 3/5/10); on a synthetic index of 50 noisy
# copies of each chunk, vector-mode hits differed for 34 of 200 queries (hybrid: none)
MMR_POOL = 20


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk, with where it comes from and how it ranked."""

    rank: int
    score: float
    chunk_id: str
    text: str
    file_name: str
    path: str
    page_start: int | None
    page_end: int | None
    section: str
    groups: list[str]
    vector_rank: int | None
    fts_rank: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """Hits and what produced them (recorded with every retrieval)."""

    query: str
    mode: str
    k: int
    groups: list[str]
    rerank: str
    hits: list[Hit]
    latency_ms: float
    hop_terms: list[str] = field(default_factory=list)   # what the second hop searched for (none: no second hop)


class Retriever:
    """Holds the embedder and the index open across queries."""

    def __init__(self, cfg: Config, index_dir, entitled: Entitlement | None = None) -> None:
        self.cfg = cfg
        self.entitled = entitled or entitlement(cfg)
        self.embedder = Embedder(cfg)
        self.index_dir = index_dir
        self._visible: dict[tuple[str, ...], list[tuple[dict[str, Any], str]]] = {}

    @cached_property
    def index(self) -> ChunkIndex:
        return ChunkIndex(self.index_dir, self.embedder.dim)

    def require_chunks(self, hint: str = "") -> None:
        """Refuse to go on with an empty index, saying what to do."""
        if self.index.count() == 0:
            raise UsageError(f"the index is empty: run `appliance ingest PATH...` first{hint}")

    def visible(self, groups: list[str]) -> list[tuple[dict[str, Any], str]]:
        """Every chunk a caller holding `groups` may see, with its evidence-matching form (normalise()); read and
        normalised once per group set for the life of this retriever."""
        key = tuple(self.entitled.clamp(groups))
        if key not in self._visible:
            self._visible[key] = [(c, normalise(c["text"])) for c in self.index.visible_chunks(list(key))]
        return self._visible[key]

    def search(self, query: str, k: int | None = None, mode: str | None = None, groups: list[str] | None = None,
               rerank: str | None = None) -> SearchResult:
        """Top-k chunks for `query` visible to a caller holding `groups`."""
        r = self.cfg.retrieval
        k, mode, rerank = k or r.k, mode or r.mode, rerank or r.rerank
        groups = self.entitled.clamp(groups or [])
        if mode not in RETRIEVAL_MODES:
            raise UsageError(f"unknown retrieval mode {mode!r} (choose {', '.join(RETRIEVAL_MODES)})")
        if not query.strip():
            raise UsageError("the query is empty")
        t0 = time.perf_counter()
        n = max(r.candidates, k)
        vec_rows: list[dict] = []
        fts_rows: list[dict] = []
        # the full-text search runs (in LanceDB's native code) while the query is embedded and searched by vector,
        # so hybrid costs about the slower of the two, not their sum
        fts_job = self.index.start_fts_search(query, n, groups) if mode in ("fts", "hybrid") else None
        qvec = self.embedder.embed_query(query) if mode in ("vector", "hybrid") or rerank == "sentence" else None
        if mode in ("vector", "hybrid"):
            vec_rows = self.index.vector_search(qvec.tolist(), n, groups, windows=self.cfg.ingest.embed_window > 0)
        if fts_job is not None:
            fts_rows = fts_job.result()
        fused = _fuse(vec_rows, fts_rows, r, mode)
        pool = max(MMR_POOL, k * 4)
        if rerank == "sentence":
            self.index.complete([f[0] for f in fused[:pool]])  # the reranker reads their text
            fused = self._rerank_sentences(qvec, fused[:pool]) + fused[pool:]
        kept = []
        seen_content: set[str] = set()
        per_doc: dict[str, int] = {}
        for row, score, vrank, frank in self._ordered(fused, pool, r.mmr_lambda):
            if row["content_sha256"] in seen_content:  # identical text from another file: keep the best-ranked
                continue
            if r.max_per_doc and per_doc.get(row["doc_id"], 0) >= r.max_per_doc:
                continue
            seen_content.add(row["content_sha256"])
            per_doc[row["doc_id"]] = per_doc.get(row["doc_id"], 0) + 1
            kept.append((row, score, vrank, frank))
            if len(kept) == k:
                break
        hits = [Hit(rank=i, score=round(float(score), 6), chunk_id=row["chunk_id"], text=row["text"],
                    file_name=row["file_name"], path=row["path"], page_start=row["page_start"],
                    page_end=row["page_end"], section=row["section"], groups=list(row["groups"] or []),
                    vector_rank=vrank, fts_rank=frank)
                for i, (row, score, vrank, frank) in enumerate(kept, 1)]
        terms = hop_terms(query, hits[0].text) if r.second_hop and mode == "hybrid" and k > HOP_KEEP and hits else []
        if terms:
            hits = self._second_hop(query, terms, hits, k, groups)
        return SearchResult(query=query, mode=mode, k=k, groups=groups, rerank=rerank, hits=hits,
                            latency_ms=round((time.perf_counter() - t0) * 1000, 2), hop_terms=terms)

    def _ordered(self, fused: list, pool: int, lam: float) -> Iterator:
        """Fused candidates in the order hits are taken from them, completed with their text and vector: MMR over
        the best `pool` of them, then the rest by relevance, a pool at a time (reached only where duplicates or the
        per-document cap leave fewer than k). A chunk deleted since the search is passed over."""
        for start in range(0, len(fused), pool):
            batch = fused[start:start + pool]
            self.index.complete([f[0] for f in batch])
            batch = [f for f in batch if "text" in f[0]]
            yield from (_mmr(batch, lam) if start == 0 and lam < 1.0 else batch)

    def _second_hop(self, query: str, terms: list[str], hits: list[Hit], k: int, groups: list[str]) -> list[Hit]:
        """The first HOP_KEEP hits, then what a full-text search for the query and `terms` finds, then the rest of
        the first hits, k in all."""
        found = self.search(f"{query} {' '.join(terms)}", k=k, mode="fts", groups=groups).hits
        merged: list[Hit] = []
        for h in [*hits[:HOP_KEEP], *found, *hits[HOP_KEEP:]]:
            if len(merged) < k and all(h.chunk_id != m.chunk_id and h.text != m.text for m in merged):
                merged.append(replace(h, rank=len(merged) + 1))
        return merged

    def _rerank_sentences(self, qvec: np.ndarray, fused: list) -> list:
        """Order candidates by the best cosine between the query and any one sentence of the chunk, tie-broken by
        the fused score: a long chunk is judged by its most relevant sentence, not its average."""
        texts, owner = [], []
        for i, (row, *_rest) in enumerate(fused):
            for s in sentences(row.get("text", "")):  # a chunk deleted since the search has none
                if len(s.split()) >= 3:
                    texts.append(s)
                    owner.append(i)
        if not texts:
            return fused
        sims = self.embedder.embed(texts) @ qvec
        best = np.full(len(fused), -1.0)
        for i, s in zip(owner, sims):
            best[i] = max(best[i], float(s))
        order = sorted(range(len(fused)), key=lambda i: (-best[i], -fused[i][1]))
        return [(fused[i][0], float(best[i]), fused[i][2], fused[i][3]) for i in order]


def hop_terms(query: str, text: str) -> list[str]:
    """Identifiers in `text` (dotted names, names called with ()) that `query` does not contain, first seen first."""
    lowered, out = query.lower(), []
    for term in HOP_TERM.findall(text):
        if len(term) >= 4 and term.lower() not in lowered and term not in out:
            out.append(term)
    return out[:HOP_TERMS]


def _mmr(fused: list, lam: float) -> Iterator:
    """Maximal marginal relevance: repeatedly take the candidate with the best lam * relevance - (1 - lam) * its
    highest cosine to those already taken, so near-duplicates of the first hits give way to other evidence. Yields
    them in that order, as far as the caller reads (a search needs k of them, not the whole candidate list)."""
    if not fused:
        return
    top = max(f[1] for f in fused) or 1.0
    vecs = np.array([f[0]["vector"] for f in fused], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    rel = np.array([f[1] / top for f in fused])
    best_sim = np.zeros(len(fused))
    taken = np.zeros(len(fused), dtype=bool)
    for _ in range(len(fused)):
        gain = lam * rel - (1 - lam) * best_sim
        gain[taken] = -np.inf
        i = int(np.argmax(gain))          # the first of equals, as before
        taken[i] = True
        yield fused[i]
        best_sim = np.maximum(best_sim, vecs @ vecs[i])


def _fuse(vec_rows: list[dict], fts_rows: list[dict], r, mode: str) -> list[tuple[dict, float, int | None, int | None]]:
    """(row, score, vector rank, fts rank) best first. Hybrid: weighted reciprocal rank fusion,
    score = vector_weight / (rrf_k + vector rank) + fts_weight / (rrf_k + fts rank)."""
    if mode == "vector":
        return [(r, 1.0 - r["_distance"], i + 1, None) for i, r in enumerate(vec_rows)]
    if mode == "fts":
        return [(r, r["_score"], None, i + 1) for i, r in enumerate(fts_rows)]
    table: dict[str, list] = {}
    for i, row in enumerate(vec_rows):
        table[row["chunk_id"]] = [row, r.vector_weight / (r.rrf_k + i + 1), i + 1, None]
    for i, row in enumerate(fts_rows):
        entry = table.setdefault(row["chunk_id"], [row, 0.0, None, None])
        entry[1] += r.fts_weight / (r.rrf_k + i + 1)
        entry[3] = i + 1
    return sorted((tuple(v) for v in table.values()), key=lambda t: -t[1])
