"""`appliance gold check`: flag gold answers that their own evidence and source do not support.

The gold answer is read against the oracle passages (the ingested chunks that hold its evidence, with their
section paths), clause by clause. Deterministic checks first, each with the passage it relied on:

- evidence: every evidence quote occurs in the ingested source;
- short answer: a short answer (or an alias) occurs in the passages, or all its numbers in the evidence quotes;
- numbers: every number or dice expression of the answer occurs in the passages, and the passage sentence a
  clause matches best does not give another number of the same kind in its place;
- polarity: a clause says "not/cannot/never" where the passage sentence it matches best says the opposite
  (or the reverse);
- reason: the answer gives a reason ("because ...") that the passage sentence it matches does not give;
- not stated: more than half of a clause's content words occur nowhere in the passages. Two kinds of clause are
  not flagged by it: a claim of absence about the source ("the rules give no reason", "the manual does not say"),
  which words cannot check against passages (it is listed as unchecked), and a clause that one sentence elsewhere
  in the key's source documents supports (a key that summarises more passages than it quotes): that is a warning,
  "evidence incomplete", naming the sentence to add to the evidence, and does not flag the key.

With --judge, the local judge then reads each remaining answer with the passages; its output is constrained to JSON
by a grammar, and it flags only when every one of its `eval.judge_repeats` calls says the answer is contradicted
or not stated; its raw outputs are kept either way. Off by default: measured on the lab's keys, the default 0.5B
judge flagged 4 of the 6 keys the checks passed, 3 of them correct keys (noise, not evidence).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from appliance.answering import Context, oracle_passages
from appliance.errors import UsageError
from appliance.evaluation.golden import Question, load_questions
from appliance.evaluation.judge import ask_judge
from appliance.llm import Generator, load_generator
from appliance.progress import Progress
from appliance.llm.prompts import GOLD_JUDGE
from appliance.text import claim_numbers, normalise, stems
from appliance.workspace import Workspace

_NEGATION = re.compile(r"\b(not|no|never|cannot|can't|nor|none|neither|without|isn't|aren't|doesn't|don't|may not)\b",
                       re.I)
_CAUSAL = re.compile(r"\b(because|due to|since|as a result|so that|the reason)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
# a clause that says the source is silent: "the rules give no reason", "the manual does not say", "it is not
# stated", "no reason is given" - the source named, or a passive of saying; "tenants may not record" is no such claim
_SOURCE = r"\b(?:rules?|manual|documents?|documentation|text|source|polic(?:y|ies)|passages?|guide|handbook|standard)\b"
_SAYING = r"(?:reasons?|says?|said|stated?|states|mention(?:s|ed)?|specif(?:y|ies|ied)|explain(?:s|ed)?|gives?|given)"
_ABSENCE = re.compile(_SOURCE + r"[^.;]{0,40}\b(?:no|not|never|nothing)\b[^.;]{0,20}\b" + _SAYING + r"\b"
                      r"|\b(?:is|are|was|were)\s+not\s+(?:stated|specified|mentioned|given|explained)\b"
                      r"|\bno\s+reason\s+is\s+given\b", re.I)
_CLAUSE = re.compile(r"[.;!?]\s+|,\s+(?:and|but|while|whereas)\s+|\n+")

GOLD_SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["supported", "contradicted", "not_stated"]},
                   "passage": {"type": "string", "maxLength": 200},
                   "reason": {"type": "string", "maxLength": 160}},
    "required": ["verdict", "passage", "reason"],
}


class _Sentence(NamedTuple):
    """A passage sentence with its stems and numbers, computed once per answer checked."""

    text: str
    words: set[str]
    nums: set[str]


def _best_sentence(clause_words: set[str], sentences: list[_Sentence]) -> tuple[str, int, bool]:
    """The passage sentence sharing most content words with the clause, the overlap, and whether it is unique."""
    scored = sorted(((len(clause_words & s.words), s.text) for s in sentences), key=lambda t: -t[0])
    if not scored:
        return "", 0, False
    unique = len(scored) == 1 or scored[0][0] > scored[1][0]
    return scored[0][1], scored[0][0], unique


def _cell(clause_words: set[str], sentence: str) -> str:
    """The cell of a table row (cells are tab-separated) that shares most words with the clause; any other sentence
    whole. A row holds several statements: "No heater supply" in one cell does not negate "Check 24 V supply" in
    the next."""
    cells = sentence.split("\t")
    return max(cells, key=lambda c: len(clause_words & stems(c))) if len(cells) > 1 else sentence


def _number_swap(clause: str, words: set[str], sentences: list[_Sentence]) -> dict[str, str] | None:
    """A number (or dice expression) of the clause that the best-matching numeric passage sentence replaces with
    another of the same kind: "rolls 2d6" where the passage says "rolls 1d20"."""
    for is_dice in (True, False):
        mine = {n for n in claim_numbers(clause) if ("d" in n) == is_dice}
        if not mine:
            continue
        numeric = [s for s in sentences if any(("d" in n) == is_dice for n in s.nums)]
        best, overlap, unique = _best_sentence(words - claim_numbers(clause), numeric)
        theirs = {n for n in claim_numbers(best) if ("d" in n) == is_dice}
        if unique and overlap >= 2 and not mine & theirs:
            return {"check": "numbers", "reason": f"says {', '.join(sorted(mine))} where the passage says "
                                                  f"{', '.join(sorted(theirs))}", "passage": best}
    return None


def deterministic_checks(q: Question, answer: str, passages_text: str, sections: str,
                         evidence_missing: list[str], source_text: str = "") -> list[dict[str, str]]:
    """Every deterministic finding for one gold answer (empty: nothing found). `source_text`: the rest of the key's
    source documents, where a clause the passages do not state may be found (a warning, not a flag). Findings with
    "severity": "warning" or "unchecked" do not flag the key."""
    found: list[dict[str, str]] = []
    if evidence_missing:
        found.append({"check": "evidence", "reason": "evidence quote not found in the ingested source",
                      "passage": evidence_missing[0]})
        return found
    norm_passages = normalise(passages_text).lower()
    known_words = stems(passages_text + " " + sections)
    sentences = [_Sentence(t, w, claim_numbers(t)) for t in _SENTENCE.split(passages_text) if len(w := stems(t)) >= 2]
    if len(answer.split()) <= 6:
        options = [answer, *q.aliases]
        quotes = " ".join(q.evidence)
        if not any(normalise(o).lower() in norm_passages for o in options) and not (
                claim_numbers(answer) and claim_numbers(answer) <= claim_numbers(quotes)):
            found.append({"check": "short_answer", "reason": f"the answer {answer!r} does not occur in the evidence",
                          "passage": q.evidence[0] if q.evidence else ""})
        return found
    missing_numbers = claim_numbers(answer) - claim_numbers(passages_text)
    if missing_numbers:
        found.append({"check": "numbers", "reason": f"states {', '.join(sorted(missing_numbers))}, which the "
                                                    f"evidence does not", "passage": q.evidence[0]})
    for clause in (c.strip() for c in _CLAUSE.split(answer)):
        words = stems(clause)
        if len(words) < 3:
            continue
        best, overlap, unique = _best_sentence(words, sentences)
        causal = _CAUSAL.search(clause)
        if causal:
            claim, reason = clause[: causal.start()], clause[causal.end():]
            best_claim, _, _ = _best_sentence(stems(claim), sentences)
            absent = stems(reason) - stems(best_claim)
            if not _CAUSAL.search(best_claim) and len(absent) > len(stems(reason)) / 2:
                found.append({"check": "reason", "reason": f"gives a reason ({causal.group(0)}{reason.rstrip('.')}) "
                                                           f"that the passage does not", "passage": best_claim})
                continue
        swap = _number_swap(clause, words, sentences)
        if swap:
            found.append(swap)
            continue
        if unique and overlap >= 3 and bool(_NEGATION.search(clause)) != bool(_NEGATION.search(_cell(words, best))):
            found.append({"check": "polarity", "reason": f"says {clause!r}, the passage says the "
                                                         f"{'opposite' if _NEGATION.search(clause) else 'negative'}",
                          "passage": best})
            continue
        absent = words - known_words
        if len(absent) > len(words) / 2:
            if _ABSENCE.search(clause):
                found.append({"check": "absence_claim", "severity": "unchecked", "passage": "",
                              "reason": f"{clause!r} says the source is silent; words cannot check that"})
                continue
            elsewhere = _supported_elsewhere(clause, words, source_text)
            if elsewhere:
                found.append({"check": "evidence_incomplete", "severity": "warning", "passage": elsewhere,
                              "reason": f"{clause!r} is not in the evidence but in this sentence of the source: "
                                        f"add it to the evidence"})
                continue
            found.append({"check": "not_stated", "reason": f"{clause!r}: {', '.join(sorted(absent))} not in the "
                                                           f"evidence", "passage": best})
    return found


def flags(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """The findings that flag a key (warnings and unchecked claims do not)."""
    return [f for f in found if "severity" not in f]


def _supported_elsewhere(clause: str, words: set[str], source_text: str) -> str:
    """A sentence of the source that holds at least half of the clause's content words (three at least), says it
    with the same polarity, and gives every number the clause gives ("not refunded after the first day" does not
    support "refunded after 30 days")."""
    best, overlap, unique = _best_sentence(words, [_Sentence(t, stems(t), set()) for t in _SENTENCE.split(source_text)])
    if not unique or overlap < 3 or len(words) - overlap > len(words) / 2:
        return ""
    if bool(_NEGATION.search(clause)) != bool(_NEGATION.search(best)) or not claim_numbers(clause) <= claim_numbers(best):
        return ""
    return best


def judge_gold(judge: Generator, q: Question, answer: str, context: str, repeats: int,
               seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The judge's raw outputs and parsed verdicts (unparseable ones as {'verdict': 'unparseable'})."""
    prompt, stop = judge.render(GOLD_JUDGE, context=context, question=q.question, answer=answer)
    raws = ask_judge(judge, prompt, stop, GOLD_SCHEMA, repeats, seed, max_tokens=200)
    parsed: list[dict[str, Any]] = []
    for raw in raws:
        try:
            obj = json.loads(raw)
            parsed.append(obj if obj.get("verdict") in GOLD_SCHEMA["properties"]["verdict"]["enum"]
                          else {"verdict": "unparseable"})
        except ValueError:
            parsed.append({"verdict": "unparseable"})
    return raws, parsed


def check_gold(ws: Workspace, questions_path: Path, answer_field: str = "answer", use_judge: bool = False,
               progress: Progress | None = None, command: str = "",
               judge_generator: Generator | None = None) -> dict[str, Any]:
    """Check every answerable question's gold answer (or `answer_field`) against its evidence; record findings."""
    from appliance.retrieval import Retriever

    progress = progress or Progress()
    questions = [q for q in load_questions(questions_path) if q.answerable]
    for q in questions:
        answer = q.answer if answer_field == "answer" else q.extra.get(answer_field)
        if not isinstance(answer, str) or not answer.strip():
            raise UsageError(f"question {q.id} has no field {answer_field!r}")
    retriever = Retriever(ws.config, ws.index_dir)
    retriever.require_chunks(" (ingest the golden set's source documents)")
    judge = (judge_generator or load_generator(ws, ws.config.eval.judge_model)) if use_judge else None
    results = []
    with ws.run("gold-check", command) as run:
        progress.start("gold check", len(questions), "answers")
        for i, q in enumerate(questions, 1):
            answer = q.answer if answer_field == "answer" else q.extra[answer_field]
            passages, missing = oracle_passages(q.evidence, retriever.visible(q.groups))
            ctx = Context("oracle", [p for p in passages if p.chunk_id])
            used = {p.chunk_id for p in ctx.passages}
            source = " \n".join(c["text"] for c, _ in retriever.visible(q.groups) if c["chunk_id"] not in used
                                and (not q.source_files or c["file_name"] in q.source_files))
            found = deterministic_checks(q, answer, ctx.text, " ".join(p.section for p in ctx.passages), missing,
                                         source)
            checks, notes = flags(found), [f for f in found if "severity" in f]
            judged: dict[str, Any] = {}
            if judge is not None and not checks and ctx.passages:
                raws, parsed = judge_gold(judge, q, answer, ctx.render(), ws.config.eval.judge_repeats,
                                          ws.config.llm.seed)
                judged = {"judge_model": judge.identity.model, "judge_model_sha256": judge.identity.model_sha256,
                          "judge_template_id": GOLD_JUDGE.id, "raw_outputs": raws}
                if all(p["verdict"] in ("contradicted", "not_stated") for p in parsed):
                    checks.append({"check": "judge", "reason": f"judge: {parsed[0]['verdict']}: "
                                                               f"{parsed[0].get('reason', '')}",
                                   "passage": parsed[0].get("passage", "")})
            status = "flagged" if checks else "ok"
            first = checks[0] if checks else {"reason": "supported by its evidence", "passage": ""}
            run.append("gold_findings", question_id=q.id, status=status,
                       checks_json={"checks": checks, "notes": notes} | judged, reason=first["reason"],
                       passage=first["passage"])
            results.append({"question_id": q.id, "status": status, "reason": first["reason"],
                            "passage": first["passage"], "checks": checks, "notes": notes})
            run.flush()
            progress.advance("gold check", i, len(questions), "answers",
                             f"{q.id}: {status}" + (f" ({first['reason'][:100]})" if checks else ""))
        flagged = [r["question_id"] for r in results if r["status"] != "ok"]
        run.event("gold_check_summary", questions_file=str(questions_path), answer_field=answer_field,
                  n=len(results), flagged=flagged, judge=judge.identity.model if judge else None)
        return {"run_id": run.run_id, "n": len(results), "flagged": len(flagged), "flagged_ids": flagged,
                "answer_field": answer_field, "findings": results}
