"""A dataset version read for training: checked (it exists, it is not empty, its questions stay clear of the golden
sets this workspace evaluates with), rendered in the form the model is served in, and measured in tokens.

A chat model trains on TRL's conversational prompt-completion rows as they are: TRL renders them with the chat
template read from the GGUF, which gives exactly the tokens llama.cpp renders at serve time (a test compares the two
sequences). A model without a chat template (a base model) trains on the plain text our llama.cpp generator sends
it (appliance/llm/prompts.plain_prompt) and learns to end its answer with the blank line it is stopped at.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import UsageError
from appliance.llm.prompts import PLAIN_STOP, plain_prompt
from appliance.workspace import Workspace


@dataclass
class TrainData:
    """The rows TRL trains on (train and validation), with the dataset's card and what the guard found."""

    dataset_id: str
    folder: Path
    card: dict[str, Any]
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    contaminated: list[dict[str, Any]] = field(default_factory=list)   # train examples too close to a golden question

    @property
    def withheld(self) -> int:
        return sum(r["evidence_withheld"] for r in self.train)


def dataset_folder(ws: Workspace, dataset_id: str) -> Path:
    """The folder of a dataset version, by id or unique id prefix; a clear error naming the known ones otherwise."""
    root = ws.root / "datasets"
    known = sorted(p.name for p in root.iterdir() if (p / "train.jsonl").is_file()) if root.is_dir() else []
    hits = [k for k in known if k.startswith(dataset_id)] if dataset_id else []
    if len(hits) != 1:
        why = "matches several" if len(hits) > 1 else "does not exist"
        listed = ", ".join(known) or "none; make one with `appliance sdg dataset`"
        raise UsageError(f"dataset {dataset_id!r} {why} (known: {listed})")
    return root / hits[0]


def _read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not (row["prompt"] and row["completion"][0]["content"]):
                raise KeyError("prompt")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise UsageError(f"{path}:{n}: not a prompt-completion example ({e})") from None
        rows.append(row)
    return rows


def question_of(row: dict[str, Any]) -> str:
    """The question an example asks (the end of its user message)."""
    user = [m["content"] for m in row["prompt"] if m["role"] == "user"][-1]
    return user.rsplit("Question: ", 1)[-1].strip()


def load_train_data(ws: Workspace, dataset_id: str, chat: bool) -> TrainData:
    """Read a dataset version for training (see the module docstring); `chat`: the model has a chat template."""
    folder = dataset_folder(ws, dataset_id)
    card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").is_file() else {}
    train, validation = _read(folder / "train.jsonl"), _read(folder / "validation.jsonl") if (
        folder / "validation.jsonl").is_file() else []
    if not train:
        raise UsageError(f"dataset {folder.name} has no training examples ({folder / 'train.jsonl'} is empty)")
    if not validation:
        raise UsageError(f"dataset {folder.name} has no validation examples: training stops on validation loss; "
                         f"make the dataset from more documents (sdg.validation_share)")
    data = TrainData(folder.name, folder, card, [_form(r, chat) for r in train], [_form(r, chat) for r in validation])
    data.contaminated = contamination(ws, train)
    return data


def _form(row: dict[str, Any], chat: bool) -> dict[str, Any]:
    keep = {"id": row["id"], "evidence_withheld": bool(row.get("evidence_withheld"))}
    if chat:
        return keep | {"prompt": row["prompt"], "completion": row["completion"]}
    return keep | {"prompt": plain_prompt(row["prompt"]), "completion": row["completion"][0]["content"] + PLAIN_STOP}


def contamination(ws: Workspace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training examples whose question is too close to a golden question this workspace evaluates with now (the
    same test as sdg's contamination filter; golden sets registered after the dataset was made count too)."""
    from appliance.retrieval.embed import Embedder
    from appliance.sdg.filters import Contamination
    from appliance.sdg.generate import golden_questions

    gold, _ = golden_questions(ws, [])
    if not gold:
        return []
    guard = Contamination(gold, Embedder(ws.config), ws.config.sdg)
    questions = [question_of(r) for r in rows]
    vectors = guard.embedder.embed(questions)
    found = []
    for row, q, v in zip(rows, questions, vectors):
        outcome = guard.check(q, v)
        if not outcome.passed:
            found.append({"id": row["id"], "question": q, "detail": outcome.detail})
    return found
