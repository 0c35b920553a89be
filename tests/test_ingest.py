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
    for h in out["hits"]:
        assert h["vector_rank"] or h["fts_rank"]


def test_table_rows_stay_retrievable(ingested, capsys) -> None:
    ws, _ = ingested
    _, out, _ = run(capsys, "--workspace", str(ws), "search", "price of the humidity and temperature module WS4-HUM-2",
                    "--json")
    rows = [line for h in out["hits"] for line in h["text"].splitlines() if line.startswith("WS4-HUM-2")]
    assert rows and "2650" in rows[0].replace(",", "").replace(" ", "")


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
    notes = corpus / "ws400-firmware-release-notes.txt"
    notes.write_text(notes.read_text() + "\nFirmware 9.9.9 adds the quokka telemetry mode.\n")
    (corpus / "price-list-2026.csv").unlink()
    code, out, _ = run(capsys, "--workspace", str(ws), "ingest", str(corpus), "--prune", "--json")
    assert out["counts"] == {"ingested": 1, "unchanged": 6, "removed": 1}
    _, hits, _ = run(capsys, "--workspace", str(ws), "search", "quokka telemetry mode", "-k", "1", "--mode", "fts", "--json")
    assert "quokka" in hits["hits"][0]["text"]
    _, hits, _ = run(capsys, "--workspace", str(ws), "search", "WS4-HUM-2 price NOK", "-k", "20", "--json")
    assert all(h["file_name"] != "price-list-2026.csv" for h in hits["hits"])
