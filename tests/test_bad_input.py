"""Bad input is reported (CLI output and an audit event) and skipped; the rest of the folder is ingested."""
import json
import zipfile
from pathlib import Path

import duckdb
import pytest

from appliance.cli import main
from appliance.models import REPO_ROOT

GOOD_TEXT = "Nordlys test note.\n\nThe quarterly review of the tide gauge happens every March.\n"


def _encrypted_pdf(path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(REPO_ROOT / "samples" / "corpus" / "ws400-weather-station-manual.pdf")))
    writer.encrypt("secret")
    with open(path, "wb") as f:
        writer.write(f)


def _zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"0" * (300 * 1024 * 1024))


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad") / "docs"
    d.mkdir()
    real_pdf = (REPO_ROOT / "samples" / "corpus" / "ws400-weather-station-manual.pdf").read_bytes()
    (d / "corrupt.pdf").write_bytes(real_pdf[:2000])
    _encrypted_pdf(d / "encrypted.pdf")
    (d / "empty.md").write_bytes(b"")
    (d / "binary.pdf").write_bytes(bytes(range(256)) * 40)
    (d / "latin1.txt").write_bytes("Tromsø office: the café opens at 07:30. Price 100 €.\n".encode("cp1252"))
    with open(d / "huge.txt", "wb") as f:  # sparse: 60 MiB on paper, nothing on disk
        f.truncate(60 * 1024 * 1024)
    _zip_bomb(d / "bomb.docx")
    (d / "odd name with spaces, ünïcode & 'quotes'.md").write_text("# Odd\n\n" + GOOD_TEXT)
    (d / "-leading-dash.txt").write_text(GOOD_TEXT)
    (d / "good.md").write_text("# Good\n\n" + GOOD_TEXT)
    return d


@pytest.fixture(scope="module")
def outcome(bad_folder: Path, tmp_path_factory) -> tuple[dict, Path]:
    ws = tmp_path_factory.mktemp("ws") / "ws"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["--workspace", str(ws), "ingest", str(bad_folder), "--json"])
    assert code == 0, "bad files must not fail the run"
    return json.loads(buf.getvalue()), ws


@pytest.mark.parametrize("name, reason", [
    ("corrupt.pdf", "corrupt PDF"),
    ("encrypted.pdf", "encrypted PDF"),
    ("empty.md", "empty file"),
    ("binary.pdf", "not a PDF"),
    ("huge.txt", "over ingest.max_file_mb"),
    ("bomb.docx", "zip bomb"),
])
def test_each_bad_file_is_reported_and_skipped(outcome, name: str, reason: str) -> None:
    report, ws = outcome
    files = {Path(f["path"]).name: f for f in report["files"]}
    assert files[name]["status"] == "skipped" and reason in files[name]["detail"]
    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    rows = con.execute("SELECT reason FROM v_ingest_files WHERE outcome = 'file_skipped' AND path LIKE ?",
                       [f"%/{name}"]).fetchall()
    con.close()
    assert rows and reason in rows[0][0]


def test_the_rest_of_the_folder_is_ingested(outcome) -> None:
    report, _ = outcome
    files = {Path(f["path"]).name: f for f in report["files"]}
    for name in ("good.md", "-leading-dash.txt", "odd name with spaces, ünïcode & 'quotes'.md"):
        assert files[name]["status"] == "ingested" and files[name]["chunks"] >= 1
    assert report["counts"] == {"ingested": 4, "skipped": 6}


def test_non_utf8_text_is_decoded_and_flagged(outcome) -> None:
    report, _ = outcome
    f = next(f for f in report["files"] if f["path"].endswith("latin1.txt"))
    assert f["status"] == "ingested" and "not valid UTF-8" in f["warnings"][0]


def test_missing_path_is_reported(tmp_path: Path, capsys) -> None:
    code = main(["--workspace", str(tmp_path / "ws"), "ingest", str(tmp_path / "nope"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["files"][0]["status"] == "skipped" and "no such file" in out["files"][0]["detail"]
