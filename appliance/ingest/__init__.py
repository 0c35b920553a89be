"""`appliance ingest`: files -> checked, partitioned, chunked, embedded -> the LanceDB index, incrementally.

Unchanged files (same sha256, groups and chunker settings) are skipped; changed files have their chunks replaced;
with prune, files that vanished from the given folders are removed. A file that cannot be ingested is reported
(CLI output and an audit event) and skipped; the rest goes on. Identical chunks within a file are kept once.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance import __version__
from appliance.audit import AuditStore
from appliance.config import Config
from appliance.ingest.chunking import Chunk, chunker_params, structure_chunks, window_chunks
from appliance.ingest.partition import SUPPORTED, SkipFile, partition_file
from appliance.models import sha256_file
from appliance.retrieval.index import ChunkIndex, check_groups
from appliance.workspace import Workspace

Progress = Callable[[str], None]
# Bump when parsing or chunking code changes what a file turns into: every file is then re-ingested.
PIPELINE_VERSION = 5


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

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.status] = out.get(f.status, 0) + 1
        return out

    def to_dict(self) -> dict:
        return asdict(self) | {"counts": self.counts()}


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
                    raise ValueError(f"{path}: not valid TOML: {e}") from None
                for pattern, groups in raw.items():
                    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                        raise ValueError(f"{path}: {pattern!r} must map to a list of group names")
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


def _signature(cfg: Config, groups: list[str], embedder_sha: str) -> str:
    blob = json.dumps({"chunker": chunker_params(cfg.ingest), "groups": groups, "embedder": embedder_sha,
                       "pipeline": PIPELINE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def ingest(ws: Workspace, paths: list[Path], groups: list[str] | None = None, prune: bool = False,
           progress: Progress | None = None, command: str = "") -> IngestReport:
    """Ingest files and folders into the workspace index; see the module docstring."""
    from appliance.retrieval.embed import Embedder

    say = progress or (lambda msg: None)
    cfg = ws.config
    groups = check_groups(groups or [])
    t0 = time.perf_counter()
    embedder = Embedder(cfg)
    index = ChunkIndex(ws.index_dir, embedder.dim)
    files, outcomes = discover(paths)
    known = index.documents_by_path()
    access = AccessRules()
    params = chunker_params(cfg.ingest)
    total_chunks = over_window = 0
    changed = False
    with AuditStore(ws.audit_path) as store, store.run("ingest", command or " ".join(sys.argv), cfg.to_dict(),
                                                        __version__) as run:
        for o in outcomes:
            run.event("file_skipped", path=o.path, reason=o.detail)
        for n, path in enumerate(files, 1):
            key = str(path.resolve())
            file_sha = sha256_file(path)
            old = known.get(key)
            file_groups = sorted(set(groups) | set(access.groups_for(path)))
            signature = _signature(cfg, file_groups, embedder.entry.sha256)
            if old and old["file_sha256"] == file_sha and old["signature"] == signature:
                outcomes.append(FileOutcome(str(path), "unchanged", chunks=old["n_chunks"]))
                run.event("file_unchanged", path=key, sha256=file_sha)
                continue
            say(f"[{n}/{len(files)}] {path}")
            t_file = time.perf_counter()
            try:
                if path.suffix.lower() not in SUPPORTED:
                    raise SkipFile(f"unsupported file type {path.suffix or '(none)'}")
                parsed = partition_file(path, cfg.ingest)
            except SkipFile as e:
                outcomes.append(FileOutcome(str(path), "skipped", str(e)))
                run.event("file_skipped", path=key, sha256=file_sha, reason=str(e))
                say(f"  skipped: {e}")
                continue
            if old and sorted(old["groups"] or []) != file_groups:
                parsed.warnings.append(f"access groups change from {sorted(old['groups'] or []) or 'public'} "
                                       f"to {file_groups or 'public'}")
            if cfg.ingest.chunker == "window":
                chunks = window_chunks(parsed.elements, cfg.ingest, embedder.offsets, embedder.count)
            else:
                def budget(section: tuple[str, ...]) -> int:  # what the embedder's window leaves after the prefix
                    prefix = embedder.count(" > ".join(section)) + 1 if cfg.ingest.section_prefix and section else 0
                    return max(32, embedder.max_tokens - 2 - prefix - 4)

                chunks = structure_chunks(parsed.elements, cfg.ingest, embedder.count, budget)
            seen: set[str] = set()
            rows = []
            texts = [_search_text(c, cfg.ingest.section_prefix) for c in chunks]
            vectors = embedder.embed(texts)
            doc_id = hashlib.sha256(key.encode()).hexdigest()
            for c, text, vec in zip(chunks, texts, vectors):
                content = hashlib.sha256(" ".join(c.text.split()).encode()).hexdigest()
                if content in seen:
                    continue
                seen.add(content)
                over_window += embedder.count(text) + 2 > embedder.max_tokens
                rows.append({
                    "chunk_id": hashlib.sha256(f"{doc_id}:{c.ordinal}:{content}".encode()).hexdigest()[:32],
                    "doc_id": doc_id, "path": key, "file_name": path.name, "file_sha256": file_sha,
                    "page_start": c.page_start, "page_end": c.page_end, "section": " > ".join(c.section),
                    "element_types": list(c.element_types), "text": c.text, "search_text": text,
                    "content_sha256": content, "groups": file_groups, "public": not file_groups,
                    "chunker": params["chunker"],
                    "chunker_params": json.dumps(params, sort_keys=True), "n_tokens": c.n_tokens,
                    "ordinal": c.ordinal, "vector": vec.tolist(),
                })
            index.replace_document({"doc_id": doc_id, "path": key, "file_sha256": file_sha, "groups": file_groups,
                                    "signature": signature}, rows)
            changed = True
            total_chunks += len(rows)
            pages = {e.page for e in parsed.elements if e.page is not None}
            outcomes.append(FileOutcome(str(path), "ingested", chunks=len(rows), warnings=parsed.warnings,
                                        seconds=round(time.perf_counter() - t_file, 3),
                                        words=sum(len(e.text.split()) for e in parsed.elements),
                                        pages=len(pages) if pages else None))
            run.event("file_ingested", path=key, sha256=file_sha, chunks=len(rows), groups=file_groups, **params,
                      duplicates_dropped=len(chunks) - len(rows), warnings=parsed.warnings)
            run.flush()
            for w in parsed.warnings:
                say(f"  warning: {w}")
        if prune:
            roots = [str(p.resolve()) for p in paths if p.is_dir()]
            present = {str(f.resolve()) for f in files}
            for doc_path, doc in known.items():
                if doc_path not in present and any(doc_path.startswith(r.rstrip("/") + "/") for r in roots):
                    index.remove_document(doc["doc_id"])
                    changed = True
                    outcomes.append(FileOutcome(doc_path, "removed", "no longer in the ingested folder"))
                    run.event("file_removed", path=doc_path)
        if changed:
            say("updating the full-text and vector indices")
            index.rebuild_indices()
        report = IngestReport(run_id=run.run_id, files=outcomes, seconds=round(time.perf_counter() - t0, 2),
                              chunks_total=index.count(), over_window=over_window,
                              embedder_window=embedder.max_tokens)
        run.event("ingest_summary", counts=report.counts(), chunks_total=report.chunks_total,
                  over_window=over_window, seconds=report.seconds)
    return report
