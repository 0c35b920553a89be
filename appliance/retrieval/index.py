"""The LanceDB index in the workspace: `chunks` (text, provenance, access groups, vector) and `documents`.

Access groups are enforced inside every query (a prefilter): a chunk with groups is returned only to a caller
holding at least one of them; a chunk without groups is visible to everyone.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from appliance.errors import UsageError

GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESULT_COLUMNS = ["vector", "chunk_id", "doc_id", "path", "file_name", "file_sha256", "page_start", "page_end", "section",
                  "element_types", "text", "content_sha256", "groups", "chunker", "chunker_params", "n_tokens",
                  "ordinal"]
SEARCH_COLUMNS = ["chunk_id", "doc_id", "content_sha256"]  # what fusion and de-duplication read;
HIT_COLUMNS = ["vector", "text", "path", "file_name", "page_start", "page_end", "section", "groups"]  # and what
#   MMR and a hit read: the searches return SEARCH_COLUMNS (and the row id), and `complete` reads HIT_COLUMNS for
#   the fused candidates that can still be kept
ANN_MIN_ROWS = 20_000  # below this a flat scan is exact and fast enough; above, an IVF-HNSW index is built


def check_groups(groups: list[str]) -> list[str]:
    """Validate access-group names (they end up in query filters)."""
    for g in groups:
        if not GROUP_NAME.match(g):
            raise UsageError(f"invalid access group {g!r}: letters, digits, '_', '.', '-' only, at most 64")
    return sorted(set(groups))


def group_filter(groups: list[str]) -> str:
    """SQL prefilter: public chunks, plus chunks sharing a group with the caller."""
    groups = check_groups(groups)
    if not groups:
        return "public = true"
    quoted = ", ".join(f"'{g}'" for g in groups)
    return f"(public = true OR array_has_any(groups, [{quoted}]))"


def chunk_schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("chunk_id", pa.string()), ("doc_id", pa.string()), ("path", pa.string()), ("file_name", pa.string()),
        ("file_sha256", pa.string()), ("page_start", pa.int32()), ("page_end", pa.int32()), ("section", pa.string()),
        ("element_types", pa.list_(pa.string())), ("text", pa.string()), ("search_text", pa.string()),
        ("content_sha256", pa.string()), ("groups", pa.list_(pa.string())), ("public", pa.bool_()),
        ("chunker", pa.string()),
        ("chunker_params", pa.string()), ("n_tokens", pa.int32()), ("ordinal", pa.int32()),
        ("vector", pa.list_(pa.float32(), dim)),
        ("vectors", pa.list_(pa.list_(pa.float32(), dim))),    # the chunk's windows (null: embedded whole)
    ])


DOCUMENT_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("path", pa.string()), ("file_sha256", pa.string()), ("groups", pa.list_(pa.string())),
    ("signature", pa.string()), ("n_chunks", pa.int32()), ("ingested_at", pa.timestamp("us")),
])


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """Result rows as dicts, a vector as a numpy row (converting 384 floats to a Python list costs more than the
    search itself)."""
    if table.num_rows == 0:
        return []
    if "vector" not in table.column_names:
        return table.to_pylist()
    vectors = table.column("vector").combine_chunks()
    matrix = vectors.flatten().to_numpy().reshape(table.num_rows, vectors.type.list_size)
    rows = table.drop_columns(["vector"]).to_pylist()
    for row, vec in zip(rows, matrix):
        row["vector"] = vec
    return rows


def _on_lance_loop(coro: Coroutine[Any, Any, Any]) -> Future[Any]:
    """Run a coroutine over LanceDB's async objects on the event loop LanceDB's sync API uses (imported here, so
    importing this module stays light)."""
    from lancedb.background_loop import LOOP

    return asyncio.run_coroutine_threadsafe(coro, LOOP.loop)


class ChunkIndex:
    """Open (or create) the index under `root` for vectors of `dim` dimensions."""

    def __init__(self, root: Path, dim: int) -> None:
        import lancedb

        root.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(root))
        names = set(self.db.list_tables().tables)
        self.chunks = (self.db.open_table("chunks") if "chunks" in names
                       else self.db.create_table("chunks", schema=chunk_schema(dim)))
        self.documents = (self.db.open_table("documents") if "documents" in names
                          else self.db.create_table("documents", schema=DOCUMENT_SCHEMA))
        if "public" not in self.chunks.schema.names:
            raise UsageError(f"the index in {root} was built by an older version of the appliance: delete that "
                             f"folder and ingest again")
        width = self.chunks.schema.field("vector").type.list_size
        if width != dim:
            raise UsageError(f"the index holds {width}-d vectors but the embedder makes {dim}-d ones: "
                             f"re-ingest into a new workspace")
        if "vectors" not in self.chunks.schema.names:   # an index from before windows (null where embedded whole)
            self.chunks.add_columns(chunk_schema(dim).field("vectors"))

    def documents_by_path(self) -> dict[str, dict[str, Any]]:
        return {r["path"]: r for r in self.documents.to_arrow().to_pylist()}

    def replace_document(self, doc: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        """Swap a document's chunks for new ones (delete, then add)."""
        self.remove_document(doc["doc_id"])
        if chunks:
            self.chunks.add(chunks)
        self.documents.add([doc | {"n_chunks": len(chunks), "ingested_at": datetime.now(timezone.utc).replace(tzinfo=None)}])

    def remove_document(self, doc_id: str) -> None:
        assert re.fullmatch(r"[0-9a-f]{64}", doc_id)
        self.chunks.delete(f"doc_id = '{doc_id}'")
        self.documents.delete(f"doc_id = '{doc_id}'")

    def rebuild_indices(self, windows: bool = False) -> None:
        """Full-text index over search_text (BM25), and an ANN vector index once the table is large (over the
        chunks' windows where they are searched: `windows`)."""
        from lancedb.index import FTS, Bitmap, IvfHnswSq, LabelList

        if self.chunks.count_rows() == 0:
            return
        self.chunks.create_index("search_text", config=FTS(), replace=True)
        self.chunks.create_index("public", config=Bitmap(), replace=True)  # the access-group prefilter
        self.chunks.create_index("groups", config=LabelList(), replace=True)
        if self.chunks.count_rows() >= ANN_MIN_ROWS:
            self.chunks.create_index("vectors" if windows else "vector", config=IvfHnswSq(distance_type="cosine"),
                                     replace=True)
        self.chunks.optimize()

    def count(self) -> int:
        return self.chunks.count_rows()

    # The two searches go straight to LanceDB's async table on LanceDB's own background loop, the same handle its
    # sync API wraps (so they see every write made through self.chunks): one hop per query instead of the sync query
    # builder's several (schema reads included), and the full-text search can run while the query is embedded.
    def vector_search(self, vector: list[float], n: int, groups: list[str], windows: bool = False
                      ) -> list[dict[str, Any]]:
        """The chunks nearest to `vector`; with `windows`, a chunk's distance is that of its nearest window."""
        async def run() -> list[dict[str, Any]]:
            q = (self.chunks._table.query().nearest_to(vector).column("vectors" if windows else "vector")
                 .distance_type("cosine")
                 .where(group_filter(groups)).select(SEARCH_COLUMNS + ["_distance"]).with_row_id().limit(n))
            return _rows(await q.to_arrow())
        return _on_lance_loop(run()).result()

    def start_fts_search(self, text: str, n: int, groups: list[str]) -> Future[list[dict[str, Any]]]:
        """The BM25 search, started; its rows come from the returned future."""
        words = re.sub(r"[^\w\s]", " ", text).split()

        async def run() -> list[dict[str, Any]]:
            table = self.chunks._table
            if not words or await table.count_rows() == 0:
                return []
            q = (table.query().nearest_to_text(" ".join(words), columns=["search_text"])
                 .where(group_filter(groups)).select(SEARCH_COLUMNS + ["_score"]).with_row_id().limit(n))
            return _rows(await q.to_arrow())
        return _on_lance_loop(run())

    def complete(self, rows: list[dict[str, Any]]) -> None:
        """Give search rows (SEARCH_COLUMNS) the HIT_COLUMNS, read in one take by row id (a search at 100k chunks
        spends more time reading text and vectors for its 100 candidates than finding them); by chunk id where the
        table changed between the search and the take. A row whose chunk was deleted meanwhile gets nothing."""
        todo = [r for r in rows if "text" not in r]
        if not todo:
            return
        cols = ["chunk_id", *HIT_COLUMNS]

        async def run() -> list[dict[str, Any]]:
            table = self.chunks._table
            got = _rows(await table.take_row_ids([r["_rowid"] for r in todo]).select(cols).to_arrow())
            if {g["chunk_id"] for g in got} != {r["chunk_id"] for r in todo}:
                ids = ", ".join("'" + r["chunk_id"].replace("'", "''") + "'" for r in todo)
                got = _rows(await table.query().where(f"chunk_id IN ({ids})").select(cols).to_arrow())
            return got
        full = {g["chunk_id"]: g for g in _on_lance_loop(run()).result()}
        for r in todo:
            r.update(full.get(r["chunk_id"], {}))  # a chunk deleted meanwhile stays without text

    def visible_chunks(self, groups: list[str]) -> list[dict[str, Any]]:
        """Every chunk a caller holding `groups` may see (same prefilter as the searches), without vectors,
        in document order."""
        cols = [c for c in RESULT_COLUMNS if c != "vector"]
        table = self.chunks.search().where(group_filter(groups)).select(cols).limit(self.count() or 1).to_arrow()
        return sorted(table.to_pylist(), key=lambda r: (r["path"], r["ordinal"]))
