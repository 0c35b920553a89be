"""Training examples in the form the product uses them: the question, the passages the product's own retriever
returns for it (same k, budget, order and prompt as `eval answers` rag), and the answer.

RAFT (arXiv 2403.10131) removes the source passage from some examples but keeps the original answer, which teaches
memorising, not abstaining. Here, when the evidence is withheld the target is the product's refusal sentence
(REFUSAL: the reply the CONTEXT prompt asks for, and one the judge counts as a refusal). The withheld passages are
near misses, because the failure measured on the devset is answering from on-topic passages: the source chunk
with its evidence sentence (or table row) deleted, its neighbouring chunks, and the retriever's other hits. No
withheld passage may still contain the answer (checked, and the passage dropped if it does).

Every pair gives an example with its evidence present; a share of the pairs also gives the same question with its
evidence withheld, so the model sees the two side by side (the contrast is the lesson: the same question is
answered from its evidence and refused from its near misses). Share of withheld examples among all examples:
sdg.withheld_share, default 0.12. The measured failure (0/4 unanswerable refused under rag on the devset, 3/28 on
held-out material) needs refusal examples; but too many teach refusing answerable questions (the devset's own
share of unanswerable questions is 10 %). Measured on the devset (one epoch, the same pairs, under rag): at 0.25
answerable 18/36 (base 28/36), refused 4/4 (base 0/4), 12 regressions; extra set answerable 1/10 (base 4/10),
refused 22/24 (base 2/24). At 0.12: answerable 27/36, refused 2/4, 3 regressions; extra answerable 4/10, refused
11/24. It stays a setting because the adaptation rung's measurements (regressions against refusals) decide it.

A pair's examples show eval.context_k passages, as rag does; for sdg.fewer_passages_share of the pairs (present and
withheld alike) 1 to context_k - 1 of them (the evidence always among a present example's), as the oracle condition
and a filtered or small corpus do. Measured: an adapter trained only on 3-passage examples refused 21 of 33 devset
questions when given their one gold passage (oracle), and 3 of 3 given two, against 11 of 36 answerable ones
under rag; the base model refused none of them. A share of 0.3 cut those oracle refusals a little but did not help
rag (docs/ADAPTATION.md, dev4fp30), so the default is 0.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.answering import Answerer, Context, Passage, budget
from appliance.llm.prompts import CONTEXT
from appliance.sdg.anchors import chunk_key
from appliance.sdg.filters import best_sentence
from appliance.text import normalise, numbers

REFUSAL = "I don't know"


@dataclass(frozen=True)
class Example:
    """One training example: the prompt messages (exactly CONTEXT's), the target, and where it comes from."""

    id: str
    pair_id: str
    kind: str
    split: str
    evidence_withheld: bool
    messages: list[dict[str, str]]
    completion: str
    prompt_text: str                      # the messages as the generator renders them (what llama.cpp will see)
    source_chunk_ids: list[str]
    passage_chunk_ids: list[str]
    note: str = ""                        # e.g. "source inserted": retrieval missed it, the source took the last slot
    extra: dict[str, Any] = field(default_factory=dict)


def contains_answer(text: str, answer: str) -> bool:
    """Whether `text` still gives `answer`: verbatim, all its numbers, or most of its words in one sentence."""
    if normalise(answer).lower() in normalise(text).lower():
        return True
    wanted = numbers(answer)
    if wanted and wanted <= numbers(text):
        return True
    return len(answer.split()) >= 4 and best_sentence(answer, text)[1] >= 0.8


def _passage(chunk: dict[str, Any], text: str | None = None) -> Passage:
    return Passage(chunk["chunk_id"], chunk["text"] if text is None else text, chunk["file_name"], chunk["section"],
                   chunk["page_start"])


def _without(text: str, evidence: str) -> str:
    """The chunk text with the evidence (a sentence, a table row, a step) deleted."""
    lines = [line for line in text.splitlines() if " ".join(evidence.split()) not in " ".join(line.split())]
    kept = "\n".join(lines)
    return kept.replace(evidence, " ").strip() if evidence in kept else kept


class ExampleBuilder:
    """Builds the examples of pairs with one answerer (its retriever, generator and configuration)."""

    def __init__(self, answerer: Answerer, chunks: list[dict[str, Any]], groups: list[str]) -> None:
        self.answerer = answerer
        self.cfg = answerer.cfg
        self.groups = groups
        self.by_id = {c["chunk_id"]: c for c in chunks}
        self.by_doc: dict[str, list[dict[str, Any]]] = {}
        for c in chunks:
            self.by_doc.setdefault(c["doc_id"], []).append(c)

    def withheld_order(self, pairs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The pairs in the order they are offered a withheld example (by a hash of sdg.seed and what the pair says
        and where, not of its id, which hashes the corpus's path), and how many need one: w/(1-w) of the pairs, so
        that w of all examples are withheld (exactly, where near misses exist; a pair without one passes its turn to
        the next)."""
        w = self.cfg.sdg.withheld_share
        ranked = sorted(pairs, key=lambda p: self._draw(p, "withheld").hex() + p["pair_id"])
        return ranked, round(len(pairs) * w / (1 - w))

    def _draw(self, pair: dict[str, Any], purpose: str) -> bytes:
        """A pair's seeded draw for `purpose`: a hash of sdg.seed and what the pair says and where, not of its id
        (which hashes the corpus's path), so that the same corpus in another folder draws the same."""
        said = "\n".join((pair["file_name"], pair["section"], pair["kind"], pair["question"], pair["answer"]))
        return hashlib.sha256(f"{self.cfg.sdg.seed}:{purpose}:{said}".encode()).digest()

    def passage_count(self, pair: dict[str, Any]) -> int:
        """How many passages the pair's examples show at most: eval.context_k, or for sdg.fewer_passages_share of
        the pairs 1 to context_k - 1, so that the number of passages does not tell the model whether to answer."""
        k, h = self.cfg.eval.context_k, self._draw(pair, "passages")
        if k < 2 or int.from_bytes(h[:4], "big") / 2**32 >= self.cfg.sdg.fewer_passages_share:
            return k
        return 1 + h[4] % (k - 1)

    def present_context(self, question: str, evidence: str, source: dict[str, Any]) -> tuple[Context, str]:
        """The rag context for the question; when retrieval misses the evidence, the source chunk takes the place
        of the lowest-ranked hit (noted), so the example never teaches answering without the evidence."""
        ctx, _ = self.answerer.context(question, "rag", self.groups, (evidence,))
        if ctx.evidence_in_context:
            return ctx, ""
        e = self.cfg.eval
        ranked = sorted(ctx.passages, key=lambda p: p.rank or 0)[: e.context_k - 1] + [_passage(source)]
        kept, _ = budget(ranked, e.context_max_tokens, self.answerer.generator.count_tokens)
        if e.context_order == "best-last":
            kept.reverse()
        return Context("rag", kept, True, 0), "source inserted: retrieval missed the evidence"

    def near_misses(self, question: str, answer: str, evidence: str, source: dict[str, Any]) -> list[Passage]:
        """Up to context_k on-topic passages that do not give the answer: the source without its evidence, its
        neighbours in the document, then the retriever's other hits; any that still gives the answer is dropped."""
        options = []
        rest = _without(source["text"], evidence)
        if len(rest.split()) >= 12:
            options.append(_passage(source, rest))
        siblings = self.by_doc.get(source["doc_id"], [])
        options += [_passage(c) for c in siblings if abs(c["ordinal"] - source["ordinal"]) in (1, 2)]
        ctx, _ = self.answerer.context(question, "rag", self.groups)
        options += [p for p in sorted(ctx.passages, key=lambda p: p.rank or 0) if p.chunk_id != source["chunk_id"]]
        chosen, seen = [], set()
        for p in options:
            key = (p.chunk_id, p.text)
            if key in seen or contains_answer(p.text, answer):
                continue
            seen.add(key)
            chosen.append(p)
        kept, _ = budget(chosen[: self.cfg.eval.context_k], self.cfg.eval.context_max_tokens,
                         self.answerer.generator.count_tokens)
        rng = random.Random(f"{self.cfg.sdg.seed}:{chunk_key(source)}:{question}")
        rng.shuffle(kept)  # the source-without-evidence must not always sit next to the question
        return kept

    def present(self, pair: dict[str, Any]) -> Example | str:
        """The example of a pair with its evidence present (or why there is none)."""
        source = self.by_id.get(pair["chunk_id"])
        if source is None:
            return "its source chunk is no longer in the index (re-ingested or pruned)"
        evidence = pair["evidence"] or pair["answer"]
        ctx, note = self.present_context(pair["question"], evidence, source)
        n = self.passage_count(pair)
        if n < len(ctx.passages):   # the evidence's passage and the best-ranked others, in the order rag gave them
            chosen = sorted(ctx.passages, key=lambda p: (p.chunk_id != source["chunk_id"] and evidence not in p.text,
                                                         p.rank or 0))[:n]
            ctx = Context("rag", [p for p in ctx.passages if p in chosen], True, ctx.dropped)
            note = "; ".join(x for x in (note, f"{n} of {self.cfg.eval.context_k} passages") if x)
        return self._example(pair, source, ctx, pair["answer"], False, note)

    def withheld(self, pair: dict[str, Any]) -> Example | str:
        """The same question with its evidence withheld: near misses, the refusal as target (or why there is none)."""
        source = self.by_id.get(pair["chunk_id"])
        if source is None:
            return "its source chunk is no longer in the index (re-ingested or pruned)"
        passages = self.near_misses(pair["question"], pair["answer"], pair["evidence"] or pair["answer"],
                                    source)[: self.passage_count(pair)]
        if not passages:
            return "no near-miss passage without the answer"
        note = "evidence withheld: " + ", ".join("source without its evidence" if p.chunk_id == source["chunk_id"]
                                                 else p.chunk_id[:8] for p in passages)
        return self._example(pair, source, Context("rag", passages), REFUSAL, True, note)

    def _example(self, pair: dict[str, Any], source: dict[str, Any], ctx: Context, target: str, withheld: bool,
                 note: str) -> Example:
        messages = CONTEXT.messages(question=pair["question"], context=ctx.render())
        prompt_text, _ = self.answerer.generator.render_messages(messages)
        return Example(id=f"{pair['pair_id']}-{'w' if withheld else 'p'}", pair_id=pair["pair_id"], kind=pair["kind"],
                       split=pair["split"], evidence_withheld=withheld, messages=messages, completion=target,
                       prompt_text=prompt_text, source_chunk_ids=[source["chunk_id"]],
                       passage_chunk_ids=[p.chunk_id for p in ctx.passages], note=note,
                       extra={"passages": [asdict(p) for p in ctx.passages]})
