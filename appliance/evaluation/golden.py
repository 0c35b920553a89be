"""Golden question sets (JSONL) on the contract schema, validated on load.

Each line: id, question, answer ("UNANSWERABLE" when the documents do not answer it), aliases (list),
source_file (name, list for multi_hop, or null), evidence (verbatim quote, list, or null),
kind (fact|table|number|procedure|multi_hop|unanswerable). Extra fields are kept (e.g. `groups`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import UsageError

KINDS = ("fact", "table", "number", "procedure", "multi_hop", "unanswerable")
UNANSWERABLE = "UNANSWERABLE"


class GoldenSetError(UsageError):
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
