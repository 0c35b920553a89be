"""Ingestion and retrieval on the project's sample corpus, with the real stack (unstructured, MiniLM, LanceDB)."""
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from appliance.cli import main
from appliance.models import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"


def run(capsys, *args: str):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args else out), err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A private copy of the sample corpus (tests change files in it)."""
    dest = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(SAMPLES / "corpus", dest)
    return dest


@pytest.fixture(scope="module")
def ingested(corpus: Path, tmp_path_factory) -> tuple[Path, dict]:
    ws = tmp_path_factory.mktemp("ws") / "ws"
    code = main(["--workspace", str(ws), "ingest", str(corpus), "--json"])
    assert code == 0
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    counts = dict(con.execute("SELECT outcome, count(*) FROM v_ingest_files GROUP BY outcome").fetchall())
    con.close()
    return ws, counts


def test_every_format_is_ingested_with_provenance(ingested, capsys) -> None:
    ws, counts = ingested
    assert counts == {"file_ingested": 8}
    code, out, _ = run(capsys, "--workspace", str(ws), "search", "error code E08 heater fault", "-k", "3", "--json")
    assert code == 0
    top = out["hits"][0]
    assert top["file_name"] == "ws400-weather-station-manual.pdf" and top["page_start"] >= 1
    assert "E08" in top["text"] and top["section"]
    assert "Code\tDescription\tProbable cause\tAction" in top["text"].splitlines()  # the PDF table's header row, cell by cell
    for h in out["hits"]:
        assert h["vector_rank"] or h["fts_rank"]


def test_table_rows_stay_retrievable(ingested, capsys) -> None:
    ws, _ = ingested
    _, out, _ = run(capsys, "--workspace", str(ws), "search", "price of the humidity and temperature module WS4-HUM-2",
                    "--json")
    rows = [line for h in out["hits"] for line in h["text"].splitlines() if line.startswith("WS4-HUM-2")]
    assert rows and "2650" in rows[0].replace(",", "").replace(" ", "") and "\t" in rows[0]


def test_access_groups_are_enforced_inside_the_query(ingested, capsys) -> None:
    ws, _ = ingested
    for mode in ("vector", "fts", "hybrid"):
        _, public, _ = run(capsys, "--workspace", str(ws), "search", "salary band L5 minimum maximum", "-k", "20",
                           "--mode", mode, "--json")
        assert all(h["file_name"] != "salary-bands-2026.md" and not h["groups"] for h in public["hits"])
        _, hr, _ = run(capsys, "--workspace", str(ws), "search", "salary band L5 minimum maximum", "-k", "20",
                       "--mode", mode, "--groups", "hr", "--json")
        assert any(h["file_name"] == "salary-bands-2026.md" for h in hr["hits"])
        assert all(h["file_name"] != "board-minutes-2026-q1.docx" for h in hr["hits"])


def test_bad_group_names_are_refused(ingested, capsys) -> None:
    ws, _ = ingested
    code, _, err = run(capsys, "--workspace", str(ws), "search", "x", "--groups", "hr') OR true --")
    assert code == 2 and "invalid access group" in err


def test_retrieval_eval_on_the_sample_golden_set(ingested, capsys) -> None:
    ws, _ = ingested
    code, out, _ = run(capsys, "--workspace", str(ws), "eval", "retrieval", "--questions",
                       str(SAMPLES / "questions.jsonl"), "--json")
    assert code == 0 and out["run_id"] and out["n"] == 26
    assert out["recall_at_k"] >= 0.85 and 0 < out["mrr"] <= 1
    assert not out["not_in_index"]
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    n = con.execute("SELECT count(*) FROM retrievals WHERE run_id = ?", [out["run_id"]]).fetchall()[0][0]
    con.close()
    assert n == 26
    code, verify, _ = run(capsys, "--workspace", str(ws), "audit", "verify", "--json")
    assert code == 0 and verify["ok"]


def test_reingest_skips_unchanged_replaces_changed_and_prunes(ingested, corpus: Path, capsys) -> None:
    ws, _ = ingested
    code, out, _ = run(capsys, "--workspace", str(ws), "ingest", str(corpus), "--json")
    assert out["counts"] == {"unchanged": 8}
    assert (out["chunks_embedded"], out["embed_chunks_per_s"]) == (0, None)   # nothing changed, nothing embedded
    notes = corpus / "ws400-firmware-release-notes.txt"
    notes.write_text(notes.read_text() + "\nFirmware 9.9.9 adds the quokka telemetry mode.\n")
    (corpus / "price-list-2026.csv").unlink()
    code, out, _ = run(capsys, "--workspace", str(ws), "ingest", str(corpus), "--prune", "--json")
    assert out["counts"] == {"ingested": 1, "unchanged": 6, "removed": 1}
    assert out["chunks_embedded"] > 0 and out["embed_chunks_per_s"] > 0          # only the changed file's chunks
    _, hits, _ = run(capsys, "--workspace", str(ws), "search", "quokka telemetry mode", "-k", "1", "--mode", "fts", "--json")
    assert "quokka" in hits["hits"][0]["text"]
    _, hits, _ = run(capsys, "--workspace", str(ws), "search", "WS4-HUM-2 price NOK", "-k", "20", "--json")
    assert all(h["file_name"] != "price-list-2026.csv" for h in hits["hits"])


def test_an_interrupted_ingest_is_superseded_by_the_next(tmp_path: Path, capsys) -> None:
    """Cancelled after its first file (as Ctrl-C or the UI's cancel would), an ingest leaves its run open; the next
    ingest goes on from the files it wrote, closes it as superseded (so the chain verifies) and rebuilds the
    full-text index over them."""
    from appliance.errors import Cancelled
    from appliance.ingest import ingest
    from appliance.progress import Progress
    from appliance.workspace import open_workspace

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES / "corpus", corpus)
    ws = open_workspace(tmp_path / "ws")
    progress = Progress()
    progress.sink = lambda e: progress.cancel() if e.kind == "step" and e.done == 1 else None
    with pytest.raises(Cancelled):
        ingest(ws, [corpus], progress=progress)
    code, verify, _ = run(capsys, "--workspace", str(ws.root), "audit", "verify", "--json")
    assert code == 0 and verify["ok"] and verify["unclosed"] == 1  # the interrupted run: resumable, no damage
    assert [f["problem"] for f in verify["findings"]] == ["unclosed"] and "interrupted" in verify["findings"][0]["detail"]
    assert main(["--workspace", str(ws.root), "audit", "verify"]) == 0
    assert "intact; 1 run(s) unclosed" in capsys.readouterr().out
    report = ingest(ws, [corpus])
    statuses = sorted(f.status for f in report.files)
    # the cancel is seen before the third file: two were written whole
    assert statuses.count("unchanged") == 2 and statuses.count("ingested") == 6
    con = duckdb.connect(str(ws.audit_path), read_only=True)
    ended = con.execute("SELECT status FROM v_runs WHERE kind = 'ingest' ORDER BY started_at").fetchall()
    first = con.execute("SELECT path FROM v_ingest_files WHERE outcome = 'file_ingested' ORDER BY created_at LIMIT 1"
                        ).fetchall()[0][0]
    con.close()
    assert ended == [("superseded",), ("ok",)]
    code, verify, _ = run(capsys, "--workspace", str(ws.root), "audit", "verify", "--json")
    assert code == 0 and verify["ok"]
    name = Path(first).name
    code, out, _ = run(capsys, "--workspace", str(ws.root), "search", Path(first).stem.replace("-", " "), "--mode",
                       "fts", "-k", "20", "--groups", "board,hr", "--json")
    assert any(h["file_name"] == name for h in out["hits"])


def test_long_chunks_are_embedded_in_windows_and_scored_by_their_nearest(tmp_path: Path) -> None:
    """ingest.embed_window (parent/child): chunks longer than the embedder reads are embedded as half-overlapping
    windows, each with its section prefix and within the embedder's window; vector search gives a chunk the distance
    of its nearest window, so the end of a long chunk is found as well as its start."""
    import numpy as np

    from appliance.ingest import ingest
    from appliance.retrieval import Retriever
    from appliance.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws", ["ingest.embed_window=64", "ingest.max_tokens=400"])
    report = ingest(ws, [SAMPLES / "corpus"])
    retriever = Retriever(ws.config, ws.index_dir)
    rows = retriever.index.chunks.to_arrow().to_pylist()
    emb = retriever.embedder
    assert report.over_window == 0 and json.loads(rows[0]["chunker_params"])["embed_window"] == 64
    long = max(rows, key=lambda r: r["n_tokens"])
    assert long["n_tokens"] + 2 > emb.max_tokens          # longer than one embedding could read
    assert len(long["vectors"]) >= long["n_tokens"] // 32 - 1  # windows of 64 pieces, every 32
    tail = " ".join(long["text"].split()[-25:])           # words only the last windows see
    found = retriever.index.vector_search(emb.embed_query(tail).tolist(), 5, [], windows=True)
    best = next(r for r in found if r["chunk_id"] == long["chunk_id"])
    nearest = float(np.max(np.asarray(long["vectors"]) @ emb.embed_query(tail)))
    assert found[0]["chunk_id"] == long["chunk_id"] and abs(best["_distance"] - (1 - nearest)) < 1e-3
    whole = retriever.index.vector_search(emb.embed_query(tail).tolist(), 50, [], windows=False)
    assert next((r["_distance"] for r in whole if r["chunk_id"] == long["chunk_id"]), 2.0) > best["_distance"]


def test_an_index_from_before_windows_opens_and_gains_the_column(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa

    from appliance.retrieval.index import ChunkIndex, chunk_schema

    old = pa.schema([f for f in chunk_schema(4) if f.name != "vectors"])
    row = {f.name: None for f in old} | {"chunk_id": "c1", "public": True, "vector": [1.0, 0.0, 0.0, 0.0]}
    lancedb.connect(str(tmp_path)).create_table("chunks", schema=old).add([row])
    index = ChunkIndex(tmp_path, 4)
    assert index.chunks.schema.field("vectors").type == chunk_schema(4).field("vectors").type
    assert [r["chunk_id"] for r in index.vector_search([1.0, 0.0, 0.0, 0.0], 3, [])] == ["c1"]
    assert index.vector_search([1.0, 0.0, 0.0, 0.0], 3, [], windows=True) == []   # no windows until re-ingested


def test_hits_read_their_text_after_the_search_even_when_the_table_changed_between(tmp_path: Path) -> None:
    """Searches return the few columns ranking needs and `complete` reads a hit's text by row id afterwards; if the
    table was compacted in between (row ids moved), it reads by chunk id and still gives each row its own text."""
    from appliance.retrieval.index import ChunkIndex

    index = ChunkIndex(tmp_path, 4)

    def row(i: int, vec: list[float]) -> dict:
        return {"chunk_id": f"{i:032x}", "doc_id": f"{i:064x}", "text": f"text of chunk {i}", "search_text": f"chunk {i}",
                "content_sha256": f"{i:064x}", "public": True, "groups": [], "vector": vec, "path": f"/d/{i}",
                "file_name": f"{i}.md", "section": "", "ordinal": 0}
    for i in range(6):  # one fragment per add, so compaction moves rows
        index.chunks.add([row(i, [1.0, i / 10, 0.0, 0.0])])
    found = index.vector_search([1.0, 0.0, 0.0, 0.0], 3, [])
    assert [r["chunk_id"] for r in found] == [f"{i:032x}" for i in range(3)] and "text" not in found[0]
    index.remove_document(f"{0:064x}")
    index.chunks.optimize()
    index.complete(found[1:])
    assert [r["text"] for r in found[1:]] == ["text of chunk 1", "text of chunk 2"]
    assert found[1]["file_name"] == "1.md" and found[2]["path"] == "/d/2"


def test_k_distinct_hits_come_from_beyond_the_mmr_pool_when_duplicates_fill_it(tmp_path: Path) -> None:
    """MMR reads vectors for the best fused candidates only (MMR_POOL); where identical text from many files fills
    that pool, the search reads further, a pool at a time, until it has k distinct hits."""
    import hashlib

    from appliance.config import load_config
    from appliance.retrieval import MMR_POOL, Retriever

    cfg = load_config(None)
    retriever = Retriever(cfg, tmp_path / "index")
    dim = retriever.embedder.dim

    def row(i: int, text: str) -> dict:
        return {"chunk_id": f"{i:032x}", "doc_id": f"{i:064x}", "text": text, "search_text": text,
                "content_sha256": hashlib.sha256(text.encode()).hexdigest(), "public": True, "groups": [],
                "vector": [1.0] + [0.0] * (dim - 1), "path": f"/d/{i}", "file_name": f"{i}.md", "section": "",
                "ordinal": 0}
    copies = MMR_POOL + 10
    rows = [row(i, "pump pressure limit") for i in range(copies)]
    rows += [row(copies + i, f"pump pressure limit of the model {name} in the workshop manual")
             for i, name in enumerate(("alpha", "beta"))]
    retriever.index.chunks.add(rows)
    retriever.index.rebuild_indices()
    hits = retriever.search("pump pressure limit", k=3, mode="fts").hits
    assert hits[0].text == "pump pressure limit" and hits[0].fts_rank == 1, hits
    assert sorted(h.fts_rank for h in hits[1:]) == [copies + 1, copies + 2]               # past the pool of copies
    assert {h.text for h in hits[1:]} == {r["text"] for r in rows[copies:]}


def test_hop_terms_are_identifiers_the_query_lacks() -> None:
    from appliance.retrieval import hop_terms

    text = "class sched.scheduler(timefunc=time.monotonic, delayfunc=time.sleep); e.g. call run() or enterabs()"
    assert hop_terms("Which function does sched.scheduler use?", text) == ["time.monotonic", "time.sleep",
                                                                            "enterabs"]
    assert hop_terms("plain words only", "No identifiers here, i.e. none.") == []


def test_the_second_hop_finds_the_passage_named_by_the_first(tmp_path: Path) -> None:
    """A bridge question: the first passage names the clock the scheduler uses (an identifier the question lacks);
    the passage that answers shares no word with the question. The second hop finds it; without it, it is not found."""
    from appliance.retrieval import Retriever
    from appliance.ingest import ingest
    from appliance.workspace import init_workspace

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scheduler.md").write_text("# Scheduler\n\nThe job scheduler's default time source is "
                                       "hwclock.tick_source; the scheduler runs each job when its time comes.\n")
    (docs / "hwclock.md").write_text("# Hardware clock\n\nhwclock.tick_source: since 4.2 it reads the processor's "
                                     "TSC counter, which is monotonic.\n")
    for i in range(1, 13):          # sections long enough to be chunks of their own, each near the question
        (docs / f"notes-{i}.md").write_text(
            f"# Scheduler note {i}\n\nIn release {i} the job scheduler ran jobs late whenever the wall clock was "
            f"set back, and the scheduler of release {i} logged which job ran first and which ran last.\n")
    question = "In which release did the job scheduler's default time source stop going backwards?"
    ws = init_workspace(tmp_path / "ws")
    ingest(ws, [docs])
    ws.config.retrieval.mmr_lambda = 1.0        # relevance only: MMR would lift the odd one out of near-duplicates
    retriever = Retriever(ws.config, ws.index_dir)
    found = {}
    for hop in (False, True):
        ws.config.retrieval.second_hop = hop
        result = retriever.search(question, k=3)
        found[hop] = [h.file_name for h in result.hits]
        assert [h.rank for h in result.hits] == [1, 2, 3] and bool(result.hop_terms) == hop, (found, result)
    assert found[True][0] == found[False][0] == "scheduler.md"
    assert "hwclock.md" not in found[False] and "hwclock.md" in found[True]


SITE_PAGE = """<html><head><title>Widget - Handbook</title></head><body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li>index</li><li>next |</li><li>Handbook &raquo;</li></ul></div>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<div class="body" role="main"><section><h1>Widget</h1>
<p>The widget's pressure limit is 42 bar, and it is checked every morning before use.</p>
<table><tr><th>Model</th><th>Limit</th></tr><tr><td>W-1</td><td>42 bar</td></tr></table>
</section></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>Gadget</p><div role="search">Quick search</div></div>
<div class="footer">&copy; Copyright 2026, Example Ltd. Last updated on October 07, 2026.</div>
</body></html>"""


def test_site_chrome_around_an_html_page_is_not_indexed(tmp_path: Path) -> None:
    from appliance.config import IngestConfig
    from appliance.ingest.partition import partition_file

    page = tmp_path / "widget.html"
    page.write_text(SITE_PAGE)
    elements = partition_file(page, IngestConfig()).elements
    text = " ".join(e.text for e in elements)
    assert "pressure limit is 42 bar" in text
    assert [e.rows for e in elements if e.kind == "Table"] == [(("Model", "Limit"), ("W-1", "42 bar"))]
    assert all(e.section[:1] == ("Widget",) for e in elements if e.kind != "Title")
    for chrome in ("Navigation", "index", "Home", "Previous topic", "Gadget", "Quick search", "Copyright"):
        assert chrome not in text, chrome
    # a page that marks no main content keeps its body and still loses its navigation and footer
    page.write_text("<html><body><nav>Home | Docs</nav><h1>Widget</h1><p>The widget's pressure limit is 42 bar."
                    "</p><footer>Copyright 2026, Example Ltd.</footer></body></html>")
    text = " ".join(e.text for e in partition_file(page, IngestConfig()).elements)
    assert "pressure limit is 42 bar" in text and "Home" not in text and "Copyright" not in text
    # a page that is nothing but navigation (a site map) is read whole rather than skipped as empty
    page.write_text("<html><body><div role=\"navigation\"><ul><li>Widget manual</li><li>Gadget manual</li></ul></div>"
                    "</body></html>")
    assert "Gadget manual" in " ".join(e.text for e in partition_file(page, IngestConfig()).elements)


def test_underlined_headings_of_a_text_file_open_sections_and_their_rules_are_dropped(tmp_path: Path) -> None:
    from appliance.config import IngestConfig
    from appliance.ingest.partition import partition_file

    notes = tmp_path / "release-notes.txt"
    notes.write_text("PUMP FIRMWARE NOTES\n===================\n\nThese notes list every release.\n\n"
                     "Source: internal build server\n\n------------------------------------------------------------\n\n"
                     "VERSION 2.1 (2025-03-01)\n------------------------\n\nRelease date: 2025-03-01\n\n"
                     "Fixes: the pressure alarm no longer sounds twice.\n\n"
                     "VERSION 2.0 (2025-01-10)\n------------------------\n\nRelease date: 2025-01-10\n\n"
                     "New features: remote reset.\n")
    elements = partition_file(notes, IngestConfig()).elements
    where = {e.text: e.section for e in elements}
    fixes = where["Fixes: the pressure alarm no longer sounds twice."]
    assert fixes == ("PUMP FIRMWARE NOTES", "VERSION 2.1 (2025-03-01)")
    assert where["New features: remote reset."] == ("PUMP FIRMWARE NOTES", "VERSION 2.0 (2025-01-10)")
    # a rule much longer than the line above it is a separator: that line stays text, and no rule is indexed
    assert where["Source: internal build server"] == ("PUMP FIRMWARE NOTES",)
    assert not any(set(e.text) <= set("=-") for e in elements)

