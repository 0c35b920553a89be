"""Chunkers on synthetic elements, counting words as tokens."""
from appliance.config import IngestConfig
from appliance.ingest.chunking import header_rows, structure_chunks, window_chunks
from appliance.ingest.partition import Element, _looks_like_heading


def count(text: str) -> int:
    return len(text.split())


def words_offsets(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for w in text.split():
        start = text.index(w, pos)
        out.append((start, start + len(w)))
        pos = start + len(w)
    return out


def para(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}." for i in range(n))


def test_structure_respects_size_sections_and_keeps_table_rows_whole() -> None:
    rows = (("Code", "Meaning", "Action"),) + tuple((f"E{i:02d}", f"fault {i} here", f"fix {i} now") for i in range(30))
    elements = [
        Element("Title", "1 Intro", 1, ("1 Intro",), 0),
        Element("NarrativeText", para(30, "a"), 1, ("1 Intro",)),
        Element("Title", "2 Errors", 2, ("2 Errors",), 0),
        Element("Table", "ignored", 2, ("2 Errors",), rows=rows),
    ]
    cfg = IngestConfig(max_tokens=40, min_tokens=5, overlap_tokens=0)
    chunks = structure_chunks(elements, cfg, count)
    assert all(c.n_tokens <= 40 for c in chunks)
    assert chunks[0].section == ("1 Intro",) and "2 Errors" not in chunks[0].text
    table_chunks = [c for c in chunks if "Table" in c.element_types]
    assert len(table_chunks) > 1
    for c in table_chunks:
        assert c.text.splitlines()[0] == "Code\tMeaning\tAction" or c.text.startswith("2 Errors")
    for i in range(30):  # every row is whole in exactly one chunk
        row = f"E{i:02d}\tfault {i} here\tfix {i} now"  # cells tab-separated
        assert sum(row in c.text.splitlines() for c in table_chunks) == 1


def test_the_sentence_before_a_table_travels_with_its_header_into_every_chunk_of_it() -> None:
    rows = (("Code", "Meaning"),) + tuple((f"E{i:02d}", f"fault {i}") for i in range(30))
    elements = [
        Element("Title", "2 Errors", 2, ("2 Errors",), 0),
        Element("NarrativeText", "The unit reports faults. Codes are listed below:", 2, ("2 Errors",)),
        Element("Table", "ignored", 2, ("2 Errors",), rows=rows),
    ]
    chunks = structure_chunks(elements, IngestConfig(max_tokens=30, min_tokens=5, overlap_tokens=0), count)
    table_chunks = [c for c in chunks if "Table" in c.element_types]
    assert len(table_chunks) > 2
    for c in table_chunks:  # caption, then header, then rows: in the first chunk and in every continuation
        lines = c.text.splitlines()
        at = lines.index("Codes are listed below:")
        assert lines[at + 1] == "Code\tMeaning" and lines[at + 2].startswith("E")
    assert sum("Codes are listed below:" in line for line in chunks[0].text.splitlines()) == 1  # moved, not copied
    assert "The unit reports faults." in chunks[0].text
    after_title = structure_chunks([elements[0], elements[2]], IngestConfig(max_tokens=30, min_tokens=5), count)
    assert after_title[0].text.splitlines()[:2] == ["2 Errors", "Code\tMeaning"]  # a title is no caption


def test_a_table_cut_with_overlap_or_going_on_over_a_page_keeps_its_caption_and_header() -> None:
    head = ("Name", "Description")
    page3 = (head,) + tuple((f"Opt{i}", f"installs part {i}") for i in range(12))
    page4 = (head,) + tuple((f"Opt{i}", f"installs part {i}") for i in range(12, 24))  # the header printed again
    elements = [Element("Title", "4 Options", 3, ("4 Options",), 0),
                Element("NarrativeText", "Options are listed below:", 3, ("4 Options",)),
                Element("Table", "ignored", 3, ("4 Options",), rows=page3),
                Element("Table", "ignored", 4, ("4 Options",), rows=page4)]
    chunks = structure_chunks(elements, IngestConfig(max_tokens=30, min_tokens=5, overlap_tokens=8), count)
    table_chunks = [c for c in chunks if "Table" in c.element_types]
    assert len(table_chunks) > 3
    for c in table_chunks:   # every chunk: the caption, the header once, then rows (the tail repeated after them)
        lines = [line for line in c.text.splitlines() if line != "4 Options"]
        assert lines[:2] == ["Options are listed below:", "Name\tDescription"], lines
        assert lines.count("Name\tDescription") == 1 and all(line.startswith("Opt") for line in lines[2:])
    assert any("Opt23\tinstalls part 23" in c.text.splitlines() for c in table_chunks)
    assert sum("Opt5\tinstalls part 5" in c.text.splitlines() for c in table_chunks) >= 1


def test_a_group_row_over_column_names_is_one_header_repeated_whole() -> None:
    """Merged header cells render as a group row over a row of column names: both are the header, so a chunk that
    continues the table still says which column a figure is in, and a quote from the column names into the first
    rows is whole in one chunk. A table of words keeps its first row as the only header."""
    group, names = ("Fighter", "Fighter", "Thief", "Thief"), ("Level", "Dragon Breath", "Level", "Dragon Breath")
    rows = (group, names) + tuple((f"{i}", f"{10 + i}", f"{i}", f"{20 + i}") for i in range(30))
    assert header_rows(rows) == 2
    words = (("Name", "Use"), ("Opt", "installs parts"), ("Alt", "removes parts"), ("Z", "9 parts"), ("Q", "no"))
    assert header_rows(words) == header_rows(words[:4]) == 1
    assert header_rows((("Code", "Meaning"), ("E01", "fault"))) == 1
    elements = [Element("Title", "Saves", 5, ("Saves",), 0), Element("Table", "ignored", 5, ("Saves",), rows=rows)]
    chunks = structure_chunks(elements, IngestConfig(max_tokens=30, min_tokens=5, overlap_tokens=8), count)
    table_chunks = [c for c in chunks if "Table" in c.element_types]
    assert len(table_chunks) > 3
    for c in table_chunks:
        lines = [line for line in c.text.splitlines() if line != "Saves"]
        assert lines[:2] == ["\t".join(group), "\t".join(names)], lines
        assert all(line[0].isdigit() for line in lines[2:])
    quote = "\n".join(["\t".join(names), "0\t10\t0\t20", "1\t11\t1\t21"])
    assert any(quote in c.text for c in table_chunks)


def test_structure_overlap_repeats_the_tail_when_cutting_for_size() -> None:
    elements = [Element("NarrativeText", f"sentence {i} has five words", 1, ()) for i in range(20)]
    chunks = structure_chunks(elements, IngestConfig(max_tokens=30, min_tokens=5, overlap_tokens=6), count)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        assert a.text.splitlines()[-1] == b.text.splitlines()[0]


def test_long_paragraph_is_cut_at_sentence_ends() -> None:
    elements = [Element("NarrativeText", " ".join(f"This is sentence number {i}." for i in range(40)), 3, ())]
    chunks = structure_chunks(elements, IngestConfig(max_tokens=25, min_tokens=5, overlap_tokens=0), count)
    assert all(c.n_tokens <= 25 and c.text.endswith(".") for c in chunks)
    assert {c.page_start for c in chunks} == {3}


def test_window_chunks_overlap_and_cover_everything() -> None:
    text = para(100, "w")
    elements = [Element("NarrativeText", text, 1, ("S",))]
    cfg = IngestConfig(chunker="window", window_tokens=30, window_overlap=10)
    chunks = window_chunks(elements, cfg, words_offsets, count)
    assert all(c.n_tokens <= 30 for c in chunks)
    for a, b in zip(chunks, chunks[1:]):  # each window starts with the last 10 words of the one before
        assert a.text.split()[-10:] == b.text.split()[:10]
    stitched = chunks[0].text.split() + [w for c in chunks[1:] for w in c.text.split()[10:]]
    assert stitched == text.split()  # every word, once, in order


def test_pdf_title_guesses() -> None:
    assert _looks_like_heading("6.2 Replacing the humidity module")
    assert _looks_like_heading("Error Codes and Troubleshooting")
    assert not _looks_like_heading("No heater supply on pins 6 and 7")
    assert not _looks_like_heading("E08")
    assert not _looks_like_heading("plate.")
