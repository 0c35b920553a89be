"""Prompt templates, each with a stable id recorded beside every answer (change the text: bump the version)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """A system message and a user message with {placeholders}; `plain` is the form for models without chat."""

    id: str
    system: str
    user: str
    plain: str
    stop: tuple[str, ...] = ()

    def messages(self, **fields: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system.format(**fields)},
                {"role": "user", "content": self.user.format(**fields)}]

    def completion(self, **fields: str) -> str:
        return self.plain.format(**fields)


CLOSED_BOOK = PromptTemplate(
    id="closed-book/v1",
    system=("You are a careful assistant. Answer the question briefly and directly. "
            "If you do not know the answer, say \"I don't know\" instead of guessing."),
    user="{question}",
    plain="Answer the question briefly. If you do not know, say \"I don't know\".\n\nQuestion: {question}\nAnswer:",
    stop=("\nQuestion:", "\n\n"),
)

TEMPLATES = {t.id: t for t in (CLOSED_BOOK,)}
