"""Tables in PDFs: recovered from their ruling lines with pdfplumber and put in place of the loose text.

unstructured's `fast` strategy (the only offline one: `hi_res` needs layout-model weights) returns a PDF table as one
element per cell or line, with no structure, so a row loses the header that names its columns. pdfplumber finds
ruled tables from the page's lines with no model. Its finds include page frames and boxed prose (documentation
generators draw them), so only runs of tabular rows are kept: rows with at least two filled cells, none of them
prose-long, with nothing but empty rows and wrapped cells' overflow lines between them. Each kept run becomes a
`Table` element (HTML rows, read like an HTML table's) in place of the elements that lie wholly inside its box (one
that reaches out of it is kept, so no text is lost). A table that continues on the next page without a header row gets the
header of the table it continues. Tables drawn without lines (aligned text only) are not recovered.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.ingest.chunking import row_text

MAX_CELL_CHARS = 300   # a longer cell is prose in a box (a frame, a note), not a table cell
FRAGMENT_CHARS = 80    # a row with one filled cell no longer than this may be a wrapped cell's overflow line
SLACK_PT = 2.0         # an element may reach this far out of a table's box and still belong to it
EDGE_PT = 72.0         # a table within this much of the page's top or bottom may continue across the page break
WORD = re.compile(r"\w")


@dataclass(frozen=True)
class PdfTable:
    """A table found on a page: its box (x0, top, x1, bottom, in points from the top left) and its rows."""

    page: int
    bbox: tuple[float, float, float, float]
    rows: tuple[tuple[str, ...], ...]
    page_height: float

    def html(self) -> str:
        head, *body = self.rows
        cells = lambda tag, row: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
        return ("<table><thead><tr>" + cells("th", head) + "</tr></thead><tbody>"
                + "".join("<tr>" + cells("td", r) + "</tr>" for r in body) + "</tbody></table>")


def _clean(cell: str | None) -> str:
    return " ".join((cell or "").split())


def _kind(row: list[str]) -> str:
    """tab: two or more filled cells, none prose-long; empty; frag: one short cell (a wrapped cell's overflow
    line, when more rows follow); prose: anything else (a boxed paragraph, a heading inside a frame)."""
    filled = [c for c in row if c]
    if not filled:
        return "empty"
    if len(filled) >= 2:
        return "tab" if all(len(c) <= MAX_CELL_CHARS for c in filled) else "prose"
    return "frag" if len(filled[0]) <= FRAGMENT_CHARS else "prose"


def _filled_box(cells: list[Any], row: list[str]) -> tuple[float, ...]:
    """The box around a row's filled cells (a frame's side cells span the whole page: a row's own box would too)."""
    boxes = [c for c, text in zip(cells, row) if c is not None and text] or [c for c in cells if c is not None]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _runs(table: Any, page: int, height: float) -> list[PdfTable]:
    """The runs of tabular rows of one pdfplumber table (empty columns dropped), each with its own box; a wrapped
    cell's overflow line between two rows joins the row above it."""
    rows = [[_clean(c) for c in r] for r in table.extract()]
    boxes = [_filled_box(r.cells, row) for r, row in zip(table.rows, rows)]
    out: list[PdfTable] = []
    run: list[list[str]] = []
    box: list[float] = []
    pending: list[list[str]] = []

    def close() -> None:
        cols = [j for j in range(len(run[0])) if any(WORD.search(r[j]) for r in run)] if run else []
        if len(run) >= 2 and len(cols) >= 2:  # columns of nothing or of marks only ('>>>' buttons) are dropped
            out.append(PdfTable(page, (box[0], box[1], box[2], box[3]), tuple(tuple(r[j] for j in cols) for r in run),
                                height))
        run.clear()
        pending.clear()
        box.clear()

    for row, b in zip(rows, boxes):
        kind = _kind(row)
        if kind == "tab":
            for frag in pending:  # into the row above: the same column, or the nearest filled one left of it
                k = next(i for i, c in enumerate(frag) if c)
                j = next((i for i in range(k, -1, -1) if run[-1][i]), k)
                run[-1][j] = f"{run[-1][j]} {frag[k]}".strip()
            pending.clear()
            run.append(row)
            box[:] = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])] if box else list(b)
        elif kind == "frag" and run:
            pending.append(row)
        elif kind == "prose":
            close()
    close()
    return out


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The share of the smaller box that the two boxes have in common."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def find_tables(path: Path) -> list[PdfTable]:
    """Every ruled table of a PDF as runs of tabular rows, in page order, continuations given their header."""
    import pdfplumber

    found: list[PdfTable] = []
    with pdfplumber.open(str(path)) as pdf:
        for number, page in enumerate(pdf.pages, 1):
            kept: list[PdfTable] = []
            candidates = page.find_tables()
            for table in sorted(candidates, key=lambda t: (t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1])):
                for run in _runs(table, number, float(page.height)):
                    if all(_overlap(run.bbox, k.bbox) < 0.5 for k in kept):
                        kept.append(run)
            page.close()  # pdfplumber caches every page's objects otherwise
            found.extend(sorted(kept, key=lambda t: t.bbox[1]))
    return _continued(found)


def _continued(tables: list[PdfTable]) -> list[PdfTable]:
    """A table at the top of a page, as wide as the one at the bottom of the page before and not starting with that
    table's header row, continues it: it gets that header."""
    out: list[PdfTable] = []
    for t in tables:
        prev = out[-1] if out else None
        if (prev and prev.page == t.page - 1 and prev.bbox[3] > prev.page_height - EDGE_PT and t.bbox[1] < EDGE_PT
                and len(prev.rows[0]) == len(t.rows[0]) and t.rows[0] != prev.rows[0]):
            t = PdfTable(t.page, t.bbox, (prev.rows[0], *t.rows), t.page_height)
        out.append(t)
    return out


def _box(element: Any) -> tuple[int | None, tuple[float, float, float, float] | None]:
    """An unstructured element's page and box (None where it has none)."""
    md = element.metadata
    coords = getattr(md, "coordinates", None)
    points = getattr(coords, "points", None) if coords is not None else None
    if not points:
        return md.page_number, None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return md.page_number, (min(xs), min(ys), max(xs), max(ys))


def _inside(box: tuple[float, float, float, float] | None, table: tuple[float, float, float, float]) -> bool:
    """Whether an element lies wholly inside a table (one that reaches out of it keeps its text: nothing is lost)."""
    return box is not None and (table[0] - SLACK_PT <= box[0] and box[2] <= table[2] + SLACK_PT
                                and table[1] - SLACK_PT <= box[1] and box[3] <= table[3] + SLACK_PT)


def with_tables(raw: list[Any], tables: list[PdfTable]) -> list[Any]:
    """unstructured's elements of a PDF with each table in place of the elements inside its box (at the first of
    them; by position on its page where none was inside)."""
    from unstructured.documents.elements import ElementMetadata, Table

    out = [(e, *_box(e)) for e in raw]  # each element with its page and box, read once
    for t in tables:
        element = Table(text="\n".join(row_text(r) for r in t.rows),
                        metadata=ElementMetadata(page_number=t.page, text_as_html=t.html()))
        inside = [i for i, (_, page, box) in enumerate(out) if page == t.page and _inside(box, t.bbox)]
        if inside:
            at, drop = inside[0], set(inside)
            out = [x for i, x in enumerate(out) if i not in drop]
        else:
            later = [i for i, (_, page, box) in enumerate(out) if page is not None
                     and (page > t.page or (page == t.page and box is not None and box[1] > t.bbox[1]))]
            at = later[0] if later else len(out)
        out.insert(at, (element, t.page, None))
    return [e for e, _, _ in out]
