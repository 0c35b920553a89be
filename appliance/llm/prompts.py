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


PLAIN_STOP = "\n\n"


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """Chat messages as a model without a chat template (a base model) is given them: their contents one after
    another; it is stopped at the blank line PLAIN_STOP."""
    return "\n\n".join(m["content"] for m in messages) + "\n"


CLOSED_BOOK = PromptTemplate(
    id="closed-book/v1",
    system=("You are a careful assistant. Answer the question briefly and directly. "
            "If you do not know the answer, say \"I don't know\" instead of guessing."),
    user="{question}",
    plain="Answer the question briefly. If you do not know, say \"I don't know\".\n\nQuestion: {question}\nAnswer:",
    stop=("\nQuestion:", "\n\n"),
)

CONTEXT = PromptTemplate(
    id="context/v1",
    system=("You answer questions about the user's documents using only the numbered passages you are given. "
            "Answer briefly and directly: the answer first, in a few words or one sentence. "
            "If the passages do not contain the answer, reply exactly \"I don't know\" and nothing else; "
            "never answer from general knowledge."),
    user="Passages:\n{context}\n\nQuestion: {question}",
    plain=("Answer the question using only the passages. If they do not contain the answer, say \"I don't know\"."
           "\n\nPassages:\n{context}\n\nQuestion: {question}\nAnswer:"),
    stop=("\nQuestion:", "\n\n"),
)

SYNTHESIS = PromptTemplate(
    id="council-synthesis/v1",
    system=("You are the chair of a council. Several advisers answered the same question from the same passages. "
            "Write the single best final answer: keep what the passages support, drop what they do not. "
            "Answer briefly, the answer first. If the passages do not contain the answer, reply exactly "
            "\"I don't know\"."),
    user="Passages:\n{context}\n\nQuestion: {question}\n\nAdvisers' answers:\n{drafts}\n\nFinal answer:",
    plain=("Passages:\n{context}\n\nQuestion: {question}\n\nAdvisers' answers:\n{drafts}\n\n"
           "The best final answer, supported by the passages (or \"I don't know\"):"),
    stop=("\nQuestion:", "\n\n"),
)

# Council perspectives: appended after the question, so the shared prefix (system, passages, question) is
# evaluated once and reused from llama.cpp's prompt cache by every perspective.
PERSPECTIVES: dict[str, str] = {
    "analyst": "Answer as a structured analyst: find the passage that answers it and state the answer precisely.",
    "reasoner": "Answer as a careful reasoner: think step by step in one or two short sentences, then give the answer.",
    "explorer": "Answer as a creative explorer: consider every passage, including less obvious ones, then answer.",
    "contrarian": ("Answer as a contrarian: challenge the obvious reading; if the passages do not really answer "
                   "the question, say \"I don't know\"."),
}

ANSWER_JUDGE = PromptTemplate(
    id="answer-judge/v1",
    system=("You grade answers. Compare the candidate answer with the reference answer for the question. "
            "The candidate is correct if it gives the same facts as the reference (wording may differ, extra "
            "detail is fine), incorrect if it gives different facts, misses the point or says it does not know."),
    user="Question: {question}\nReference answer: {reference}\nCandidate answer: {candidate}",
    plain=("Question: {question}\nReference answer: {reference}\nCandidate answer: {candidate}\n"
           "Is the candidate correct? JSON:"),
)

GOLD_JUDGE = PromptTemplate(
    id="gold-judge/v1",
    system=("You check an answer key against the source document. Read the passages, then the proposed answer. "
            "Verdict \"supported\" if the passages state everything the answer claims; \"contradicted\" if "
            "a passage says something different from a claim of the answer; \"not_stated\" if the answer claims "
            "something (a reason, a number, a rule) the passages do not say. Quote the passage you relied on."),
    user="Passages:\n{context}\n\nQuestion: {question}\nProposed answer: {answer}",
    plain="Passages:\n{context}\n\nQuestion: {question}\nProposed answer: {answer}\nCheck (JSON):",
)

TEMPLATES = {t.id: t for t in (CLOSED_BOOK, CONTEXT, SYNTHESIS, ANSWER_JUDGE, GOLD_JUDGE)}

QUESTION_WRITER = PromptTemplate(
    id="sdg-question/v3",
    system=("You write one quiz question about a technical document. You are given an excerpt and an answer taken "
            "from it. Write the question that this answer answers, using the words of the excerpt. Name what the "
            "question is about, so that it makes sense on its own. Do not put the answer in the question. Reply "
            "with JSON: {{\"question\": \"...\"}}"),
    user="Document: {where}\nExcerpt:\n{passage}\n\nAnswer: {answer}{hint}",
    plain=("Excerpt ({where}):\n{passage}\n\nAnswer: {answer}{hint}\nThe question this answer answers, as JSON:"),
)
# Worked examples shown to the question writer as earlier turns of the conversation (a 0.5B model copies an
# example written into the instructions; as turns of its own it follows their form). Deliberately from a domain
# no customer document is about, so that a copied word is caught by the grounding filter.
QUESTION_EXAMPLES = (
    ({"where": "gx7-pump-manual.pdf — Maintenance", "passage": "The GX-7 garden pump must be descaled every 200 "
      "operating hours with citric acid.", "answer": "every 200 operating hours", "hint": ""},
     "How often must the GX-7 garden pump be descaled?"),
    ({"where": "seed-catalogue.csv — Prices", "passage": "variety: Sunny Orange\ncrop: carrot\npack_g: 5\n"
      "price_eur: 3.20", "answer": "3.20", "hint": "\n(The answer says the 'price_eur' of 'Sunny Orange'.)"},
     "What is the price in euros of a pack of Sunny Orange carrot seeds?"),
)

PAIR_WRITER = PromptTemplate(
    id="sdg-pair/v1",
    system=("You write quiz questions about technical documents. Read the passage and write one question that the "
            "passage answers, and its answer copied from the passage. The question must say what it is about, so "
            "that it makes sense without the passage. Reply with JSON: {{\"question\": \"...\", \"answer\": \"...\"}}."),
    user="Document: {where}\nPassage:\n{passage}",
    plain="Passage ({where}):\n{passage}\n\nA question the passage answers, and its answer, as JSON:",
)

TEMPLATES.update({t.id: t for t in (QUESTION_WRITER, PAIR_WRITER)})
