"""Ingestion throughput by format, and the cost of re-ingesting an unchanged corpus, on this machine.

Pages are real pages for PDF and 500 words elsewhere. Runs on ../shared/devset/corpus when present (skips
cleanly otherwise) and on samples/corpus. Prints absolute figures and the re-ingest / first-ingest ratio.

    .venv/bin/python bench/ingest_throughput.py
"""
from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import appliance  # noqa: F401
from appliance.ingest import ingest
from appliance.models import REPO_ROOT
from appliance.workspace import init_workspace

CORPORA = {"samples": REPO_ROOT / "samples" / "corpus", "devset": REPO_ROOT.parent / "shared" / "devset" / "corpus"}


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        for name, corpus in CORPORA.items():
            if not corpus.is_dir():
                print(f"{name}: {corpus} not found, skipped")
                continue
            ws = init_workspace(tmp / name)
            ingest(ws, [REPO_ROOT / "samples" / "corpus" / "price-list-2026.csv"])  # load models outside the timing
            first = ingest(ws, [corpus])
            again = ingest(ws, [corpus])
            by_fmt: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
            for f in first.files:
                if f.status != "ingested":
                    continue
                fmt = Path(f.path).suffix.lower().lstrip(".")
                pages = f.pages if fmt == "pdf" and f.pages else f.words / 500
                by_fmt[fmt][0] += pages
                by_fmt[fmt][1] += f.seconds
                by_fmt[fmt][2] += 1
            print(f"== {name}: {first.counts()} in {first.seconds:.1f} s, {first.chunks_total} chunks; embedding "
                  f"{first.chunks_embedded} chunks took {first.embed_seconds:.1f} s ({first.embed_chunks_per_s} chunks/s)")
            print(f"{'format':>7} {'files':>6} {'pages':>7} {'seconds':>8} {'pages/s':>8}")
            for fmt, (pages, secs, n) in sorted(by_fmt.items()):
                print(f"{fmt:>7} {n:>6} {pages:>7.1f} {secs:>8.2f} {pages / secs:>8.2f}")
            print(f"re-ingest unchanged: {again.counts()} in {again.seconds:.2f} s = "
                  f"{again.seconds / first.seconds:.1%} of the first ingest")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
