"""Tables in PDFs recovered with pdfplumber, on the sample manual and the devset's PDFs (real files, real parsers)."""
import re
from pathlib import Path

import pytest

from appliance.config import IngestConfig
from appliance.ingest import partition
from appliance.ingest.partition import partition_file
from appliance.models import REPO_ROOT

MANUAL = REPO_ROOT / "samples" / "corpus" / "ws400-weather-station-manual.pdf"
DEVSET = REPO_ROOT.parent / "shared" / "devset" / "corpus"


def tables(path: Path) -> list:
    return [e for e in partition_file(path, IngestConfig()).elements if e.kind == "Table"]


def no_word_lost(path: Path) -> None:
    """Every word the loose extraction has is still there with the tables recovered (cells or kept elements)."""
    def words(elements: list) -> set[str]:
        return set(re.findall(r"\w+", " ".join(" ".join(map(" ".join, e.rows)) if e.rows else e.text
                                                for e in elements)))
    on, off = (partition_file(path, IngestConfig(pdf_tables=flag)).elements for flag in (True, False))
    assert not words(off) - words(on)


def test_a_ruled_pdf_table_becomes_rows_under_their_header_and_its_loose_text_goes() -> None:
    found = {t.rows[0]: t for t in tables(MANUAL)}
    codes = found[("Code", "Description", "Probable cause", "Action")]
    assert codes.page == 10 and [r[0] for r in codes.rows[1:4]] == ["E01", "E02", "E03"]
    assert all(len(r) == 4 for r in codes.rows)
    loose = [e.text for e in partition_file(MANUAL, IngestConfig()).elements if e.kind != "Table"]
    assert not any(t.startswith("E01") for t in loose)
    # without recovery the same rows arrive as loose text, headerless: what this replaces
    off = partition_file(MANUAL, IngestConfig(pdf_tables=False)).elements
    assert not any(e.kind == "Table" for e in off) and any(e.text.startswith("E01") for e in off)
    no_word_lost(MANUAL)


def test_a_failed_recovery_keeps_the_loose_text_and_says_so(monkeypatch) -> None:
    from appliance.ingest import pdftables

    def broken(path: Path) -> list:
        raise ValueError("bad xref")
    monkeypatch.setattr(pdftables, "find_tables", broken)
    parsed = partition.partition_file(MANUAL, IngestConfig())
    assert not any(e.kind == "Table" for e in parsed.elements) and any(e.text.startswith("E01") for e in parsed.elements)
    assert parsed.warnings == ["tables not recovered (ValueError: bad xref); their rows are indexed as loose text"]


@pytest.mark.skipif(not DEVSET.is_dir(), reason="../shared/devset is absent")
def test_frames_and_code_boxes_are_not_tables_and_a_table_across_pages_keeps_its_header() -> None:
    struct = tables(DEVSET / "library-struct.pdf")
    byte_order = next(t for t in struct if t.rows[0] == ("Character", "Byte order", "Size", "Alignment"))
    assert ("!", "network (= big-endian)", "standard", "none") in byte_order.rows
    assert all(">>>" not in cell for t in struct for row in t.rows for cell in row)  # example boxes stay text
    windows = tables(DEVSET / "using-windows.pdf")
    options = [t for t in windows if t.rows[0] == ("Name", "Description", "Default")]
    assert [t.page for t in options] == [3, 4]
    assert options[0].rows[1][0] == "InstallAllUsers" and any(r[0] == "Include_tcltk" for r in options[1].rows)
    assert all(len(cell) <= 300 for t in windows for row in t.rows for cell in row)  # no page frame taken as a table
    no_word_lost(DEVSET / "using-windows.pdf")  # text next to a table inside the same frame stays


def test_body_text_at_a_page_top_is_kept_and_running_headers_are_not() -> None:
    """The `fast` strategy calls a page's first line a "Header": kept where it occurs once (here a section title
    and a sentence), dropped where it runs over pages (the manual's document code and page labels)."""
    windows = partition_file(DEVSET / "using-windows.pdf", IngestConfig()).elements
    assert any(e.section[-1:] == ("4.1.3. Installing Without UI",) and e.page == 3 for e in windows)
    assert any(e.text == "Changed in version 3.6: Support for long paths was enabled in Python." for e in windows)
    manual = " ".join(e.text for e in partition_file(MANUAL, IngestConfig()).elements)
    assert "NI-MAN-WS400 rev D" not in manual and not re.search(r"\bPage \d+\b", manual)


def test_numbered_subheadings_that_the_pdf_parser_calls_text_still_open_their_sections() -> None:
    from unstructured.documents.elements import NarrativeText, Title

    from appliance.ingest.partition import _structure

    where = {e.text: e.section for e in partition_file(MANUAL, IngestConfig()).elements}
    # unstructured's `fast` strategy gives "7.2 Notes on selected error codes" as NarrativeText
    assert where["7.2 Notes on selected error codes"] == ("7 Troubleshooting", "7.2 Notes on selected error codes")
    e07 = next(text for text in where if text.startswith("E07:"))
    assert where[e07][-1] == "7.2 Notes on selected error codes"
    # only a number that continues the outline is taken: not a step, nor a figure that jumps ahead
    els = _structure([Title("1 Setup"), Title("1.1 Tools"), NarrativeText("1.2 Mounting the mast"),
                      NarrativeText("3.4 Volts are shown on the display"), NarrativeText("2 Fasten the bolts"),
                      Title("1.3 Wiring"), Title("2 Use"), Title("3 Care")])
    assert {e.text: e.kind for e in els}["1.2 Mounting the mast"] == "Title"
    assert {e.text: e.kind for e in els}["3.4 Volts are shown on the display"] != "Title"
    assert {e.text: e.kind for e in els}["2 Fasten the bolts"] != "Title"
