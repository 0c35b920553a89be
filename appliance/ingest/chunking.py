"""Chunkers: cut a document's elements into chunks sized for the embedder (counted in its word pieces).

- `structure`: follows the document: a new chunk at each section title (once the current one has min_tokens),
  never over max_tokens; a chunk cut for size inside a section starts with the last overlap_tokens of the previous
  one (whole elements); a table is cut between rows only, its header rows travel with the sentence before it
  (caption or introduction), and a chunk that continues a table repeats both; an over-long paragraph is cut at
  sentence ends.
- `window`: a fixed window of window_tokens word pieces sliding with window_overlap, blind to structure (baseline).

Every chunk records its chunker and parameters, its pages and section path.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import IngestConfig
from appliance.ingest.partition import Element
from appliance.text import sentences

_MAX_HEADER_ROWS = 3

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to index: `text` is the content, `section` the title path it sits under."""

    text: str
    section: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    element_types: tuple[str, ...]
    n_tokens: int
    ordinal: int = 0


@dataclass(frozen=True)
class _Unit:
    text: str
    kind: str
    page: int | None
    section: tuple[str, ...]
    tokens: int
    table_header: str | None = None  # set on table rows: the header row to repeat when a chunk starts mid-table


def _split_long(text: str, limit: int, count: TokenCounter) -> list[str]:
    """Cut text at sentence ends (then at words) into pieces of at most `limit` word pieces."""
    pieces, cur = [], ""
    for sentence in sentences(text):
        cand = f"{cur} {sentence}".strip()
        if count(cand) <= limit:
            cur = cand
            continue
        if cur:
            pieces.append(cur)
        if count(sentence) <= limit:
            cur = sentence
            continue
        cur = ""
        for word in sentence.split():
            cand = f"{cur} {word}".strip()
            if count(cand) > limit and cur:
                pieces.append(cur)
                cur = word
            else:
                cur = cand
    if cur:
        pieces.append(cur)
    return pieces


def _caption(units: list[_Unit], section: tuple[str, ...], limit: int, count: TokenCounter) -> str:
    """Take the sentence just before a table (its caption, or the line that introduces it) off the unit it ends,
    so that it travels with the table's header row; '' where the table follows a title or another table."""
    if not units or units[-1].section != section or units[-1].kind in ("Title", "TableHeader", "TableRow"):
        return ""
    last = units[-1]
    *rest, caption = [p for p in sentences(last.text) if p.strip()] or [""]
    if not caption or count(caption) > limit // 4:
        return ""
    units.pop()
    if rest:
        text = " ".join(rest)
        units.append(_Unit(text, last.kind, last.page, last.section, count(text)))
    return caption


def row_text(cells: tuple[str, ...] | list[str]) -> str:
    """A table row as its cells separated by tabs: the model and the gold check see where each cell ends, while
    search (the embedder's and BM25's tokenisers split on any whitespace) and evidence matching (normalise()) see
    the same words as with spaces."""
    return "\t".join(cells)


def header_rows(rows: tuple[tuple[str, ...], ...]) -> int:
    """How many leading rows are a table's header: the first, and up to two more label rows (no digit in any cell)
    under it, where the first is a label row too and most rows below them (two or more) hold a digit. A group row
    over a row of column names (merged header cells as HTML, DOCX and Docling's Markdown render them) is one
    header, repeated whole in every chunk of the table; a table of words keeps its first row as the header."""
    def labels(row: tuple[str, ...]) -> bool:
        return not any(ch.isdigit() for cell in row for ch in cell)

    if not labels(rows[0]):
        return 1
    n = 1
    while n < min(_MAX_HEADER_ROWS, len(rows) - 1) and labels(rows[n]):
        n += 1
    body = rows[n:]
    return n if n == 1 or (len(body) >= 2 and sum(not labels(r) for r in body) * 2 > len(body)) else 1


def _units(elements: list[Element], limit: int, count: TokenCounter) -> list[_Unit]:
    units: list[_Unit] = []
    for el in elements:
        if el.kind == "Table" and len(el.rows) > 1:
            last = units[-1] if units else None
            n_head = header_rows(el.rows)
            head = "\n".join(row_text(r) for r in el.rows[:n_head])
            if (last and last.kind == "TableRow" and last.section == el.section and last.table_header
                    and last.table_header.endswith(head)):
                header = last.table_header      # the same table going on (a page break): its caption goes on too
            else:
                caption = _caption(units, el.section, limit, count)
                header = "\n".join(filter(None, [caption, head]))
                units.append(_Unit(header, "TableHeader", el.page, el.section, count(header)))
            for row in el.rows[n_head:]:
                text = row_text(row)
                for piece in (_split_long(text, limit // 2, count) if count(text) > limit // 2 else [text]):
                    units.append(_Unit(piece, "TableRow", el.page, el.section, count(piece), table_header=header))
            continue
        n = count(el.text)
        if n <= limit:
            units.append(_Unit(el.text, el.kind, el.page, el.section, n))
        else:
            units.extend(_Unit(p, el.kind, el.page, el.section, count(p)) for p in _split_long(el.text, limit, count))
    return units


def _make_chunk(units: list[_Unit], count: TokenCounter) -> Chunk:
    text = "\n".join(u.text for u in units)
    pages = [u.page for u in units if u.page is not None]
    kinds = tuple(dict.fromkeys("Table" if u.kind.startswith("Table") else u.kind for u in units))
    return Chunk(text=text, section=units[0].section, page_start=min(pages) if pages else None,
                 page_end=max(pages) if pages else None, element_types=kinds, n_tokens=count(text))


def structure_chunks(elements: list[Element], cfg: IngestConfig, count: TokenCounter,
                     budget: Callable[[tuple[str, ...]], int] | None = None) -> list[Chunk]:
    """Section-aware chunks of at most cfg.max_tokens word pieces (or budget(section), when smaller: room left in
    the embedder's window after the section prefix); table rows are never split across chunks."""
    chunks: list[Chunk] = []
    cur: list[_Unit] = []
    cur_tokens = 0

    def flush() -> None:
        nonlocal cur, cur_tokens
        if cur:
            chunks.append(_make_chunk(cur, count))
        cur, cur_tokens = [], 0

    for unit in _units(elements, cfg.max_tokens, count):
        if unit.kind == "Title" and cur_tokens >= cfg.min_tokens:
            flush()
        limit = min(cfg.max_tokens, budget(cur[0].section if cur else unit.section)) if budget else cfg.max_tokens
        cut = bool(cur) and cur_tokens + unit.tokens + 1 > limit
        head = (_Unit(unit.table_header, "TableHeader", unit.page, unit.section, count(unit.table_header))
                if unit.table_header is not None and (cut or not cur) else None)   # only where a chunk starts
        if cut:
            # cut for size inside a section: the next chunk repeats the tail (whole units), so a sentence or a
            # table row that the parser broke across elements is still whole in one chunk
            tail: list[_Unit] = []
            room = min(cfg.overlap_tokens, limit - unit.tokens - 1 - (head.tokens + 1 if head else 0))
            for prev in reversed(cur[1:]):
                if prev.tokens + 1 > room or prev.kind in ("Title", "TableHeader"):
                    break
                tail.insert(0, prev)
                room -= prev.tokens + 1
            flush()
            cur, cur_tokens = tail, sum(u.tokens + 1 for u in tail)
            if head:                                  # continuing a table: its header row (and caption) first
                cur, cur_tokens = [head, *cur], cur_tokens + head.tokens + 1
        elif not cur and head:
            cur, cur_tokens = [head], head.tokens + 1
        cur.append(unit)
        cur_tokens += unit.tokens + 1
    flush()
    return [Chunk(**{**c.__dict__, "ordinal": i}) for i, c in enumerate(chunks)]


def window_chunks(elements: list[Element], cfg: IngestConfig, tokenize: Callable[[str], list[tuple[int, int]]],
                  count: TokenCounter) -> list[Chunk]:
    """Fixed windows of cfg.window_tokens word pieces, overlapping by cfg.window_overlap, over the whole text.

    tokenize(text) returns the character span of every word piece.
    """
    parts, spans, pos = [], [], 0
    for el in elements:
        text = "\n".join(row_text(r) for r in el.rows) if el.kind == "Table" and el.rows else el.text
        parts.append(text)
        spans.append((pos, pos + len(text), el))
        pos += len(text) + 1
    full = "\n".join(parts)
    offsets = tokenize(full)
    if not offsets:
        return []
    step = cfg.window_tokens - cfg.window_overlap
    chunks: list[Chunk] = []
    for start in range(0, len(offsets), step):
        window = offsets[start:start + cfg.window_tokens]
        a, b = window[0][0], window[-1][1]
        covered = [el for s, e, el in spans if s < b and e > a]
        pages = [el.page for el in covered if el.page is not None]
        text = full[a:b]
        chunks.append(Chunk(text=text, section=covered[0].section if covered else (), page_start=min(pages) if pages else None,
                            page_end=max(pages) if pages else None,
                            element_types=tuple(dict.fromkeys(el.kind for el in covered)), n_tokens=count(text),
                            ordinal=len(chunks)))
        if start + cfg.window_tokens >= len(offsets):
            break
    return chunks


def chunker_params(cfg: IngestConfig) -> dict[str, int | str | bool]:
    """The parameters that shape chunks under the configured chunker (recorded on every chunk)."""
    if cfg.chunker == "window":
        return {"chunker": "window", "window_tokens": cfg.window_tokens, "window_overlap": cfg.window_overlap,
                "section_prefix": cfg.section_prefix}
    params: dict[str, int | str | bool] = {
        "chunker": "structure", "max_tokens": cfg.max_tokens, "min_tokens": cfg.min_tokens,
        "overlap_tokens": cfg.overlap_tokens, "section_prefix": cfg.section_prefix}
    if cfg.embed_window:                    # recorded only when on: chunks made without it keep their signature
        params["embed_window"] = cfg.embed_window
    return params
