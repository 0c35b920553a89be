"""Golden question sets (JSONL) on the contract schema, validated on load.

Each line: id, question, answer ("UNANSWERABLE" when the documents do not answer it), aliases (list),
source_file (name, list for multi_hop, or null), evidence (verbatim quote, list, or null),
kind (fact|table|number|procedure|multi_hop|unanswerable). Extra fields are kept (e.g. `groups`).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("fact", "table", "number", "procedure", "multi_hop", "unanswerable")
UNANSWERABLE = "UNANSWERABLE"


class GoldenSetError(ValueError):
    """The golden set breaks the schema; the message names the line and the field."""


@dataclass(frozen=True)
class Question:
    """One golden question."""

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    source_files: tuple[str, ...]
    evidence: tuple[str, ...]
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        return self.answer != UNANSWERABLE

    @property
    def groups(self) -> list[str]:
        return list(self.extra.get("groups") or [])


_SPACE_AT_PUNCT = re.compile(r"\s*([()\[\]{},;:.!?])\s*")


def normalise(text: str) -> str:
    """The form in which evidence quotes are matched: NFKC, table pipes dropped, whitespace collapsed, and no
    whitespace next to brackets and punctuation (parsers add or drop it around inline markup: "( tzinfo" vs
    "(tzinfo"; a Markdown table row "| Longbow | 60 gp |" is indexed as its cells "Longbow 60 gp")."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).replace("|", " ").split())
    return _SPACE_AT_PUNCT.sub(r"\1", collapsed)


_STOP = set("the a an and or of to in on for with by is are was were be been it its this that as at from which "
            "what when where who how does do did can may not no yes if then than also only".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9_.+-]*")


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry content (no stop words, at least 3 characters or a number)."""
    return {w.strip(".") for w in _WORD.findall(text.lower())
            if w not in _STOP and (len(w) >= 3 or any(ch.isdigit() for ch in w))}


def stems(text: str) -> set[str]:
    """content_words() lightly stemmed (a plural s dropped), for overlap checks."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in content_words(text)}


def _as_tuple(value: Any, name: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GoldenSetError(f"{where}: {name} must be a string, a list of strings or null")


def load_questions(path: Path) -> list[Question]:
    """Read and validate a golden set: required fields, kinds, unique ids, evidence present unless unanswerable."""
    if not path.is_file():
        raise GoldenSetError(f"no golden set at {path}")
    questions, ids = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GoldenSetError(f"{where}: not valid JSON ({e})") from None
        missing = [k for k in ("id", "question", "answer", "kind") if not isinstance(obj.get(k), str) or not obj[k]]
        if missing:
            raise GoldenSetError(f"{where}: missing or empty {', '.join(missing)}")
        if obj["kind"] not in KINDS:
            raise GoldenSetError(f"{where}: kind {obj['kind']!r} is not one of {', '.join(KINDS)}")
        if obj["id"] in ids:
            raise GoldenSetError(f"{where}: duplicate id {obj['id']!r}")
        ids.add(obj["id"])
        evidence = _as_tuple(obj.get("evidence"), "evidence", where)
        answerable = obj["answer"] != UNANSWERABLE
        if answerable and not evidence:
            raise GoldenSetError(f"{where}: answerable question {obj['id']} has no evidence")
        if (obj["kind"] == "unanswerable") == answerable:
            raise GoldenSetError(f"{where}: kind 'unanswerable' goes with answer {UNANSWERABLE!r} and nothing else")
        known = {"id", "question", "answer", "aliases", "source_file", "evidence", "kind"}
        questions.append(Question(
            id=obj["id"], question=obj["question"], answer=obj["answer"],
            aliases=_as_tuple(obj.get("aliases"), "aliases", where),
            source_files=_as_tuple(obj.get("source_file"), "source_file", where), evidence=evidence,
            kind=obj["kind"], extra={k: v for k, v in obj.items() if k not in known}))
    if not questions:
        raise GoldenSetError(f"{path}: no questions")
    return questions
