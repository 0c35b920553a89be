"""`appliance ingest`: files -> checked, partitioned, chunked, embedded -> the LanceDB index, incrementally.

Unchanged files (same sha256, groups and chunker settings) are skipped; changed files have their chunks replaced;
with prune, files that vanished from the given folders are removed. A file that cannot be ingested is reported
(CLI output and an audit event) and skipped; the rest goes on. Identical chunks within a file are kept once.
"""
from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.config import Config
from appliance.errors import UsageError
from appliance.ingest.chunking import Chunk, chunker_params, structure_chunks, window_chunks
from appliance.ingest.partition import SUPPORTED, Parsed, SkipFile, partition_file
from appliance.models import sha256_file
from appliance.progress import Progress
from appliance.resume import close_superseded, process_event, stopped_runs
from appliance.retrieval.index import ChunkIndex, check_groups
from appliance.workspace import Workspace

if TYPE_CHECKING:
    from appliance.audit import Run
    from appliance.retrieval.embed import Embedder

STAGE = "ingest"
# Bump when parsing or chunking code changes what a file turns into: every file is then re-ingested.
PIPELINE_VERSION = 11


@dataclass
class FileOutcome:
    """What happened to one file."""

    path: str
    status: str            # ingested | unchanged | skipped | removed
    detail: str = ""
    chunks: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0   # parse + chunk + embed + write
    words: int = 0
    pages: int | None = None  # real pages where the format has them (PDF)


@dataclass
class IngestReport:
    """The run's outcome, file by file."""

    run_id: str
    files: list[FileOutcome]
    seconds: float
    chunks_total: int
    over_window: int       # chunks whose section prefix + text exceed the embedder's window (their tail is not embedded)
    embedder_window: int
    chunks_embedded: int = 0
    embed_seconds: float = 0.0

    @property
    def embed_chunks_per_s(self) -> float | None:
        """Embedding throughput of this run (chunks of changed files / seconds in the embedder)."""
        return round(self.chunks_embedded / self.embed_seconds, 1) if self.embed_seconds else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.status] = out.get(f.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return asdict(self) | {"counts": self.counts(), "embed_chunks_per_s": self.embed_chunks_per_s}


def discover(paths: list[Path]) -> tuple[list[Path], list[FileOutcome]]:
    """Files under the given paths (folders recursively, hidden entries skipped), and outcomes for bad paths."""
    found, bad = [], []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                    found.append(f)
        elif p.is_file():
            found.append(p)
        else:
            bad.append(FileOutcome(str(p), "skipped", "no such file or folder"))
    return found, bad


ACCESS_FILE = ".access.toml"


class AccessRules:
    """Access groups declared beside the documents: a folder's `.access.toml` maps file-name patterns (relative to
    that folder, fnmatch syntax) to groups, e.g. `"salary-*.md" = ["hr"]`. Declared once, they hold for every
    later ingest, whatever the command line says; --groups adds to them."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, list[str]]] = {}

    def _rules(self, folder: Path) -> dict[str, list[str]]:
        if folder not in self._cache:
            path = folder / ACCESS_FILE
            rules: dict[str, list[str]] = {}
            if path.is_file():
                try:
                    raw = tomllib.loads(path.read_text())
                except tomllib.TOMLDecodeError as e:
                    raise UsageError(f"{path}: not valid TOML: {e}") from None
                for pattern, groups in raw.items():
                    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                        raise UsageError(f"{path}: {pattern!r} must map to a list of group names")
                    rules[pattern] = check_groups(groups)
            self._cache[folder] = rules
        return self._cache[folder]

    def groups_for(self, file: Path) -> list[str]:
        """Groups declared for `file` by .access.toml files in its folder and every folder above it."""
        groups: set[str] = set()
        file = file.resolve()
        for folder in file.parents:
            for pattern, gs in self._rules(folder).items():
                if fnmatch.fnmatch(file.relative_to(folder).as_posix(), pattern):
                    groups.update(gs)
        return sorted(groups)


def _search_text(chunk: Chunk, with_prefix: bool) -> str:
    return (" > ".join(chunk.section) + "\n" + chunk.text) if with_prefix and chunk.section else chunk.text


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


def _signature(cfg: Config, groups: list[str], embedder_sha: str) -> str:
    blob = json.dumps({"chunker": chunker_params(cfg.ingest), "groups": groups, "embedder": embedder_sha,
                       "pipeline": PIPELINE_VERSION, "pdf_tables": cfg.ingest.pdf_tables}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Planned:
    """A file found under the given paths and what its index entry needs to be."""

    path: Path
    key: str                     # resolved path: the document's identity in the index
    sha256: str
    groups: list[str]
    signature: str               # chunker settings, groups, embedder and pipeline version
    old: dict[str, Any] | None   # its document row in the index, if any

    @property
    def unchanged(self) -> bool:
        return bool(self.old and self.old["file_sha256"] == self.sha256 and self.old["signature"] == self.signature)


class Ingestor:
    """Turns files into index rows: parse, chunk (sized to the embedder), embed, write; one embedder and one index
    for the whole run."""

    def __init__(self, ws: Workspace, groups: list[str]) -> None:
        from appliance.retrieval.embed import Embedder

        self.cfg = ws.config
        self.groups = groups
        self.embedder: Embedder = Embedder(self.cfg)
        self.index = ChunkIndex(ws.index_dir, self.embedder.dim)
        self.access = AccessRules()
        self.params = chunker_params(self.cfg.ingest)
        self.over_window = 0
        self.chunks_embedded = 0
        self.embed_seconds = 0.0

    def plan(self, files: list[Path], known: dict[str, dict[str, Any]]) -> list[Planned]:
        """Each file with its hash, groups (command line + .access.toml) and the signature it must be indexed with."""
        out = []
        for path in files:
            key = str(path.resolve())
            groups = sorted(set(self.groups) | set(self.access.groups_for(path)))
            out.append(Planned(path, key, sha256_file(path), groups,
                               _signature(self.cfg, groups, self.embedder.entry.sha256), known.get(key)))
        return out

    def parse(self, p: Planned) -> Parsed:
        """The file's elements (SkipFile when it cannot be ingested), with a warning when its groups change."""
        if p.path.suffix.lower() not in SUPPORTED:
            raise SkipFile(f"unsupported file type {p.path.suffix or '(none)'}")
        parsed = partition_file(p.path, self.cfg.ingest)
        if p.old and sorted(p.old["groups"] or []) != p.groups:
            parsed.warnings.append(f"access groups change from {sorted(p.old['groups'] or []) or 'public'} "
                                   f"to {p.groups or 'public'}")
        return parsed

    def chunk(self, parsed: Parsed) -> list[Chunk]:
        """Chunks by the configured chunker, sized to what the embedder reads."""
        cfg, emb = self.cfg.ingest, self.embedder
        if cfg.chunker == "window":
            return window_chunks(parsed.elements, cfg, emb.offsets, emb.count)
        if cfg.embed_window:                          # embedded in windows: a chunk may be longer than one
            return structure_chunks(parsed.elements, cfg, emb.count)

        def budget(section: tuple[str, ...]) -> int:  # what the embedder's window leaves after the prefix
            prefix = emb.count(" > ".join(section)) + 1 if cfg.section_prefix and section else 0
            return max(32, emb.max_tokens - 2 - prefix - 4)

        return structure_chunks(parsed.elements, cfg, emb.count, budget)

    def rows(self, p: Planned, chunks: list[Chunk]) -> list[dict[str, Any]]:
        """Index rows of the chunks (embedded with their section prefix), identical chunks kept once."""
        if not chunks:
            return []
        texts = [_search_text(c, self.cfg.ingest.section_prefix) for c in chunks]
        t0 = time.perf_counter()
        windowed = bool(self.cfg.ingest.embed_window)
        if windowed:                     # every window of every chunk in one batch, then split back per chunk
            windows = [self.windows(c) for c in chunks]
            flat = self.embedder.embed([w for ws in windows for w in ws])
            window_vectors = np.split(flat, np.cumsum([len(ws) for ws in windows])[:-1])
            vectors = [_unit(v.mean(axis=0)) for v in window_vectors]
        else:
            vectors = list(self.embedder.embed(texts))
            window_vectors = [None] * len(vectors)
        self.embed_seconds += time.perf_counter() - t0
        self.chunks_embedded += len(texts)
        doc_id = hashlib.sha256(p.key.encode()).hexdigest()
        seen: set[str] = set()
        rows = []
        for c, text, vec, wins in zip(chunks, texts, vectors, window_vectors):
            content = hashlib.sha256(" ".join(c.text.split()).encode()).hexdigest()
            if content in seen:
                continue
            seen.add(content)
            self.over_window += not windowed and self.embedder.count(text) + 2 > self.embedder.max_tokens
            rows.append({
                "chunk_id": hashlib.sha256(f"{doc_id}:{c.ordinal}:{content}".encode()).hexdigest()[:32],
                "doc_id": doc_id, "path": p.key, "file_name": p.path.name, "file_sha256": p.sha256,
                "page_start": c.page_start, "page_end": c.page_end, "section": " > ".join(c.section),
                "element_types": list(c.element_types), "text": c.text, "search_text": text,
                "content_sha256": content, "groups": p.groups, "public": not p.groups,
                "chunker": self.params["chunker"], "chunker_params": json.dumps(self.params, sort_keys=True),
                "n_tokens": c.n_tokens, "ordinal": c.ordinal, "vector": vec.tolist(),
                "vectors": None if wins is None else wins.tolist(),
            })
        return rows

    def windows(self, chunk: Chunk) -> list[str]:
        """The texts a chunk is embedded as under `ingest.embed_window`: windows of that many word pieces (fewer
        where the section prefix leaves less room in the embedder's window), each half overlapping the previous,
        each with the section prefix."""
        cfg, emb = self.cfg.ingest, self.embedder
        prefix = " > ".join(chunk.section) + "\n" if cfg.section_prefix and chunk.section else ""
        size = max(16, min(cfg.embed_window, emb.max_tokens - 2 - (emb.count(prefix) + 1 if prefix else 0)))
        spans = emb.offsets(chunk.text)
        out = []
        for start in range(0, max(len(spans), 1), max(1, size // 2)):
            piece = spans[start:start + size]
            out.append(prefix + (chunk.text[piece[0][0]:piece[-1][1]] if piece else chunk.text))
            if start + size >= len(spans):
                break
        return out

    def ingest_file(self, run: Run, p: Planned) -> FileOutcome:
        """Parse, chunk, embed and write one changed file; its chunks replace the old ones in one step."""
        t0 = time.perf_counter()
        try:
            parsed = self.parse(p)
        except SkipFile as e:
            run.event("file_skipped", path=p.key, sha256=p.sha256, reason=str(e))
            return FileOutcome(str(p.path), "skipped", str(e))
        chunks = self.chunk(parsed)
        rows = self.rows(p, chunks)
        doc_id = hashlib.sha256(p.key.encode()).hexdigest()
        self.index.replace_document({"doc_id": doc_id, "path": p.key, "file_sha256": p.sha256, "groups": p.groups,
                                     "signature": p.signature}, rows)
        run.event("file_ingested", path=p.key, sha256=p.sha256, chunks=len(rows), groups=p.groups, **self.params,
                  duplicates_dropped=len(chunks) - len(rows), warnings=parsed.warnings)
        pages = {e.page for e in parsed.elements if e.page is not None}
        return FileOutcome(str(p.path), "ingested", chunks=len(rows), warnings=parsed.warnings,
                           seconds=round(time.perf_counter() - t0, 3),
                           words=sum(len(e.text.split()) for e in parsed.elements), pages=len(pages) if pages else None)

    def prune(self, run: Run, paths: list[Path], files: list[Path], known: dict[str, dict[str, Any]]
              ) -> list[FileOutcome]:
        """Remove indexed documents that vanished from the given folders."""
        roots = [str(p.resolve()) for p in paths if p.is_dir()]
        present = {str(f.resolve()) for f in files}
        removed = []
        for doc_path, doc in known.items():
            if doc_path not in present and any(doc_path.startswith(r.rstrip("/") + "/") for r in roots):
                self.index.remove_document(doc["doc_id"])
                removed.append(FileOutcome(doc_path, "removed", "no longer in the ingested folder"))
                run.event("file_removed", path=doc_path)
        return removed


def ingest(ws: Workspace, paths: list[Path], groups: list[str] | None = None, prune: bool = False,
           progress: Progress | None = None, command: str = "") -> IngestReport:
    """Ingest files and folders into the workspace index; see the module docstring. Each file is written whole
    (its chunks and its audit event), so a killed ingest loses at most the file in progress and a rerun goes on."""
    progress = progress or Progress()
    t0 = time.perf_counter()
    ingestor = Ingestor(ws, check_groups(groups or []))
    files, outcomes = discover(paths)
    with ingest_lock(ws):
        stopped = stopped_runs(ws, "ingest", "ingest_start")
        report = _ingest(ws, ingestor, paths, files, outcomes, stopped, prune, progress, command, t0)
        close_superseded(ws, stopped, f"an ingest killed or interrupted here; ingest run {report.run_id} went on "
                                      f"from the files it had written (each whole)")
    return report


@contextmanager
def ingest_lock(ws: Workspace) -> Iterator[None]:
    """One ingest at a time per workspace (a second is refused, not queued): the index and the audit run of an
    interrupted ingest are only ever touched by the ingest holding this lock."""
    ws.index_dir.mkdir(parents=True, exist_ok=True)
    with (ws.index_dir / ".ingest.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError("another ingest is running in this workspace; wait for it (or cancel it) and run this "
                             "one again") from None
        yield


def _ingest(ws: Workspace, ingestor: Ingestor, paths: list[Path], files: list[Path], outcomes: list[FileOutcome],
            stopped: list[str], prune: bool, progress: Progress, command: str, t0: float) -> IngestReport:
    known = ingestor.index.documents_by_path()
    with ws.run("ingest", command) as run:
        run.event("ingest_start", **process_event(command))
        run.flush()                      # at once: another process must see that this one works on its run
        for o in outcomes:
            run.event("file_skipped", path=o.path, reason=o.detail)
        planned = ingestor.plan(files, known)
        progress.start(STAGE, len(planned), "files")
        for n, p in enumerate(planned, 1):
            if p.unchanged:
                outcomes.append(FileOutcome(str(p.path), "unchanged", chunks=p.old["n_chunks"] if p.old else 0))
                run.event("file_unchanged", path=p.key, sha256=p.sha256)
            else:
                outcome = ingestor.ingest_file(run, p)
                outcomes.append(outcome)
                run.flush()
                for note in ([f"skipped {p.path}: {outcome.detail}"] if outcome.status == "skipped" else
                             [f"warning: {p.path}: {w}" for w in outcome.warnings]):
                    progress.note(note, STAGE)
            progress.advance(STAGE, n, len(planned), "files", f"{p.path.name} {outcomes[-1].status}")
        if prune:
            outcomes += ingestor.prune(run, paths, files, known)
        # a killed ingest may have written files without rebuilding the indices over them
        if stopped or any(o.status in ("ingested", "removed") for o in outcomes):
            progress.note("updating the full-text and vector indices", STAGE)
            ingestor.index.rebuild_indices(windows=ws.config.ingest.embed_window > 0)
        report = IngestReport(run_id=run.run_id, files=outcomes, seconds=round(time.perf_counter() - t0, 2),
                              chunks_total=ingestor.index.count(), over_window=ingestor.over_window,
                              embedder_window=ingestor.embedder.max_tokens, chunks_embedded=ingestor.chunks_embedded,
                              embed_seconds=round(ingestor.embed_seconds, 2))
        run.event("ingest_summary", counts=report.counts(), chunks_total=report.chunks_total,
                  over_window=report.over_window, seconds=report.seconds, chunks_embedded=report.chunks_embedded,
                  embed_seconds=report.embed_seconds)
    return report
