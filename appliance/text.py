"""Text helpers shared by retrieval, judging, gold checks and synthetic data: one place for how text is normalised,
which words carry content, how numbers are read and where sentences end. Standard library only."""
from __future__ import annotations

import re
import unicodedata

# --- matching evidence quotes ------------------------------------------------------------------------------------

_SPACE_AT_PUNCT = re.compile(r"\s*([()\[\]{},;:.!?])\s*")


def normalise(text: str) -> str:
    """The form in which evidence quotes are matched: NFKC, table pipes dropped, whitespace collapsed, and no
    whitespace next to brackets and punctuation (parsers add or drop it around inline markup: "( tzinfo" vs
    "(tzinfo"; a Markdown table row "| Longbow | 60 gp |" is indexed as its cells "Longbow 60 gp")."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).replace("|", " ").split())
    return _SPACE_AT_PUNCT.sub(r"\1", collapsed)


# --- words --------------------------------------------------------------------------------------------------------

_STOP = set("the a an and or of to in on for with by is are was were be been it its this that as at from which "
            "what when where who how does do did can may not no yes if then than also only".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9_.+-]*")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry content (no stop words, at least 3 characters or a number)."""
    return {w.strip(".") for w in _WORD.findall(text.lower())
            if w not in _STOP and (len(w) >= 3 or any(ch.isdigit() for ch in w))}


def stems(text: str) -> set[str]:
    """content_words() lightly stemmed (a plural s dropped), for overlap checks."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in content_words(text)}


def norm_answer(text: str) -> str:
    """Lower case, articles and punctuation dropped, whitespace collapsed (for exact and containment checks); a dot
    inside a name or number stays ("datetime.date" is not "datetime date")."""
    text = _ARTICLES.sub(" ", text.lower())
    text = re.sub(r"[^\w\s.%+-]|(?<!\w)[.]|[.](?!\w)", " ", text)
    return " ".join(text.split())


# --- sentences ----------------------------------------------------------------------------------------------------

# not after "e.g." / "i.e." / "cf." / "vs.": a synthetic pair's answer was cut at "(e.g." and kept unbalanced
SENTENCE_END = re.compile(r"(?<=[.!?;:])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bcf\.)(?<!\bvs\.)\s+", re.I)


def sentences(text: str) -> list[str]:
    """`text` cut after sentence-ending punctuation (., !, ?, ; and :), not after an abbreviation."""
    return SENTENCE_END.split(text)


# --- numbers ------------------------------------------------------------------------------------------------------

# a number, or a dice expression ("2d6") kept whole, then a unit word when one follows
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+d\d+\b|\d+(?:[.,]\d+)*(?:\.\d+)?)(?:\s*(?:%|[a-zA-Z/°]{1,8}\b))?")
_VALUE = re.compile(r"[-+]?(?:\d+d\d+|\d[\d.,]*)")
_REFERENCE = re.compile(r"\b(?:pages?|p\.|pp\.|section|chapter|table)\s+\d+(?:\s*(?:-|and|to)\s*\d+)?", re.I)
UNITS = {"%", "day", "days", "week", "weeks", "month", "months", "year", "years", "h", "hour", "hours", "min",
         "minute", "minutes", "s", "sec", "second", "seconds", "ms", "kb", "mb", "gb", "tb", "byte", "bytes", "bit",
         "bits", "v", "mv", "a", "ma", "w", "kw", "mw", "m", "km", "cm", "mm", "kg", "g", "m/s", "km/h", "hpa",
         "°c", "c", "nok", "eur", "usd", "kr", "gp", "pages", "times", "employees", "people", "items"}


def canonical_number(text: str) -> str:
    """'2,048' -> '2048', '4900.00' -> '4900', '2.50' -> '2.5'."""
    value = text.replace(",", "")
    if re.fullmatch(r"\d+\.\d+", value):
        value = value.rstrip("0").rstrip(".")
    return value


def numbers(text: str) -> set[str]:
    """The quantities `text` states, each with its unit when a known one follows: '10 MB' -> '10 mb',
    '2,048' -> '2048', '2d6' -> '2d6' (a dice expression is one number, not 2)."""
    out = set()
    for m in _NUMBER.finditer(text):
        raw = m.group(0).lower()
        number = _VALUE.match(raw)
        unit = raw[number.end():].strip()
        value = canonical_number(number.group(0).rstrip(".,"))
        out.add(f"{value} {unit}" if unit in UNITS else value)
    return out


def claim_numbers(text: str) -> set[str]:
    """numbers() without units or signs, and without page / section / table references ('see page 12' is not a
    claim): what a gold check compares between a claim and a passage."""
    return {n.partition(" ")[0].lstrip("+-") for n in numbers(_REFERENCE.sub(" ", text))}


def same_quantity(number: str, stated: set[str]) -> bool:
    """Whether `number` ('90 days', '4900') is among `stated` (numbers() form): same value, and the same unit when
    both give one."""
    value, _, unit = number.partition(" ")
    for other in stated:
        v, _, u = other.partition(" ")
        if v == value and (not unit or not u or unit == u):
            return True
    return False
