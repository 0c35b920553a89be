"""Datasets: the accepted pairs turned into training examples, versioned by content, with a card.

Which pairs: those that passed every filter and a person approved (or edited: the edit is used); with
`unreviewed=True`, every passing pair no one rejected, and the dataset says so (its `reviewed_only` is false and
the card names how many were never reviewed). Probe-split pairs never enter a dataset.

A version is named by the sha256 of its canonical content (the examples, one JSON line each, sorted by id): the
same pairs and settings give the same id, and a changed byte gives another. Files: workspace/datasets/ID/
train.jsonl, validation.jsonl (split by document, or by section in a corpus too small for that: none on both
sides), card.json and card.md. Each line is the contract's prompt-completion form (TRL's conversational
prompt/completion), with `id`, `kind`, `source_chunk_ids` and `evidence_withheld` kept as extra fields; `export`
writes the other formats.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.answering import Answerer, oracle_passages
from appliance.audit import AuditStore, records
from appliance.errors import UsageError
from appliance.llm import Generator, load_generator
from appliance.progress import Progress
from appliance.sdg.examples import Example, ExampleBuilder
from appliance.sdg.filters import FILTERS
from appliance.sdg.generate import chunk_split, golden_questions
from appliance.workspace import Workspace

STAGE = "sdg dataset"


def pair_states(store: AuditStore) -> list[dict[str, Any]]:
    """Every generated pair (once: the run where it passed every filter, if one did) with whether it passed and its
    latest review (an edit's text applied)."""
    passed: dict[tuple[str, str], set[str]] = {}
    for run_id, pair_id, f in store.con.execute(
            "SELECT run_id, pair_id, filter FROM sdg_filters WHERE passed").fetchall():
        passed.setdefault((run_id, pair_id), set()).add(f)
    reviews = {r["pair_id"]: r for r in records(store.con, "SELECT * FROM sdg_reviews ORDER BY created_at, seq")}
    out: dict[str, dict[str, Any]] = {}
    for p in records(store.con, "SELECT * FROM sdg_pairs ORDER BY created_at, seq"):
        p["passed"] = FILTERS[-1] in passed.get((p["run_id"], p["pair_id"]), set())  # the last: every one before it
        if p["pair_id"] in out and (out[p["pair_id"]]["passed"] or not p["passed"]):
            continue  # the same pair written again by a later run (a duplicate there): its first passing state counts
        review = reviews.get(p["pair_id"])
        p["review"] = review["action"] if review else None
        p["reviewer"] = review["reviewer"] if review else None
        if review and review["action"] == "edit":
            p["question"] = review["question"] or p["question"]
            p["answer"] = review["answer"] or p["answer"]
        out[p["pair_id"]] = p
    return list(out.values())


def select_pairs(states: list[dict[str, Any]], unreviewed: bool) -> list[dict[str, Any]]:
    """The pairs a dataset takes (training and validation splits only)."""
    approved = ("approve", "edit")
    return [p for p in states if p["split"] != "probe" and p["review"] != "reject"
            and (p["review"] in approved or (unreviewed and p["passed"]))]


def _line(e: Example) -> dict[str, Any]:
    """The prompt-completion line of an example (the contract's dataset form)."""
    return {"id": e.id, "prompt": e.messages, "completion": [{"role": "assistant", "content": e.completion}],
            "kind": e.kind, "source_chunk_ids": e.source_chunk_ids, "evidence_withheld": e.evidence_withheld}


def build_dataset(ws: Workspace, unreviewed: bool = False, groups: list[str] | None = None,
                  progress: Progress | None = None, command: str = "",
                  generator: Generator | None = None) -> dict[str, Any]:
    """Make a dataset version from the accepted pairs; return its card (with id and paths)."""
    progress = progress or Progress()
    with AuditStore(ws.audit_path) as store:
        states = pair_states(store)
    pairs = select_pairs(states, unreviewed)
    if not pairs:
        pending = sum(p["passed"] and p["review"] is None and p["split"] != "probe" for p in states)
        raise UsageError("no pairs to make a dataset from: " + (
            f"{pending} pairs passed every filter but none is approved; review them (`appliance sdg review`) or "
            f"use --unreviewed" if pending else "run `appliance sdg generate` first"))
    gen = generator or load_generator(ws)
    answerer = Answerer.open(ws, gen, need_index=True)
    assert answerer.retriever is not None
    groups = sorted(groups or [])
    chunks = [c for c, _ in answerer.retriever.visible(groups)]
    builder = ExampleBuilder(answerer, chunks, groups)
    examples, skipped = [], Counter()
    ranked, need = builder.withheld_order(pairs)
    progress.start(STAGE, len(pairs), "pairs")
    for i, p in enumerate(ranked, 1):
        tries = [builder.present] + ([builder.withheld] if sum(e.evidence_withheld for e in examples) < need else [])
        for build in tries:
            made = build(p)
            if isinstance(made, str):
                skipped[made] += 1
            else:
                examples.append(made)
        progress.advance(STAGE, i, len(pairs), "pairs", p["pair_id"])
    lines = {s: [json.dumps(_line(e), sort_keys=True, ensure_ascii=False) for e in sorted(examples, key=lambda e: e.id)
                 if e.split == s] for s in ("train", "validation")}
    if not lines["train"]:
        raise UsageError("every accepted pair belongs to validation documents; generate more pairs")
    digest = hashlib.sha256(("\n".join(lines["train"]) + "\n--\n" + "\n".join(lines["validation"])).encode())
    dataset_id = digest.hexdigest()[:16]
    folder = ws.root / "datasets" / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (folder / f"{split}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    (folder / "examples-full.jsonl").write_text("".join(json.dumps(asdict(e), ensure_ascii=False) + "\n"
                                                        for e in examples), encoding="utf-8")
    card = dataset_card(ws, dataset_id, examples, pairs, states, skipped, unreviewed, answerer, chunks, gen)
    (folder / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / "card.md").write_text(card_markdown(card), encoding="utf-8")
    with ws.run("sdg-dataset", command) as run:
        run.append("datasets", dataset_id=dataset_id, path=str(folder), n_train=len(lines["train"]),
                   n_validation=len(lines["validation"]), reviewed_only=not unreviewed, card_json=card)
        card["run_id"] = run.run_id
    return card | {"path": str(folder)}


def dataset_card(ws: Workspace, dataset_id: str, examples: list[Example], pairs: list[dict[str, Any]],
                 states: list[dict[str, Any]], skipped: Counter, unreviewed: bool, answerer: Answerer,
                 chunks: list[dict[str, Any]], gen: Generator) -> dict[str, Any]:
    """Counts per kind, split and document, filter pass rates, coverage, withheld share, the models that made the
    pairs, and how many golden questions have their gold evidence among the training sources."""
    used = [p for p in pairs if any(e.pair_id == p["pair_id"] for e in examples)]
    checked = Counter(p["run_id"] for p in states)
    with AuditStore(ws.audit_path) as store:
        rates = store.con.execute("SELECT filter, sum(checked), sum(passed) FROM v_sdg_survival GROUP BY filter"
                                  ).fetchall()
        recorded = store.con.execute(  # the unit the pairs were split by, as their newest generation run recorded it
            "SELECT json_extract_string(payload_json, '$.split_unit') FROM events WHERE kind = 'sdg_start' AND "
            "run_id IN (SELECT unnest(?)) ORDER BY created_at DESC LIMIT 1", [list(checked)]).fetchone()
    unit = (recorded and recorded[0]) or "document"   # runs from before the section split recorded none
    train_docs = {c["doc_id"] for c in chunks if chunk_split(c, unit, ws.config) != "probe"}
    sources = {cid for e in examples if e.split == "train" for cid in e.source_chunk_ids}
    gold, gold_files = golden_questions(ws, [])
    assert answerer.retriever is not None
    seen, unseen = [], []
    for q in (q for q in gold if q.answerable):
        found, _ = oracle_passages(q.evidence, answerer.retriever.visible(q.groups))
        (seen if {p.chunk_id for p in found} & sources else unseen).append(q.id)
    return {
        "dataset_id": dataset_id, "examples": len(examples),
        "split_unit": unit, "by_split": dict(Counter(e.split for e in examples)),
        "by_kind": dict(Counter(e.kind for e in examples)),
        "by_document": dict(Counter(next(c["file_name"] for c in chunks if c["chunk_id"] == e.source_chunk_ids[0])
                                    for e in examples)),
        "evidence_withheld": sum(e.evidence_withheld for e in examples),
        "withheld_share": round(sum(e.evidence_withheld for e in examples) / len(examples), 4),
        "withheld_share_setting": ws.config.sdg.withheld_share,
        "source_inserted": sum(e.note.startswith("source inserted") for e in examples),
        "passages_per_example": {str(n): c for n, c in sorted(Counter(len(e.passage_chunk_ids) for e in examples
                                                                        ).items())},
        "fewer_passages_share_setting": ws.config.sdg.fewer_passages_share,
        "skipped_pairs": dict(skipped),
        "reviewed_only": not unreviewed,
        "pairs": {"used": len(used), "approved_or_edited": sum(p["review"] in ("approve", "edit") for p in used),
                  "never_reviewed": sum(p["review"] is None for p in used)},
        "filter_pass_rates": {f: {"checked": int(c), "passed": int(n), "rate": round(n / c, 4) if c else None}
                              for f, c, n in rates},
        "generation_runs": dict(checked),
        "coverage": {"training_documents": len(train_docs),
                     "documents_with_examples": len({p["doc_id"] for p in used}),
                     "sections_with_examples": len({(p["doc_id"], p["section"]) for p in used})},
        "generator": sorted({f"{p['generator_model']}@{p['generator_sha256'][:12]}" for p in used}),
        "prompt_renderer": f"{gen.identity.model}@{gen.identity.model_sha256[:12]}",
        "golden_overlap": {"golden_files": gold_files, "evidence_seen_in_training": seen,
                           "evidence_unseen": unseen},
    }


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (what a reviewer reads)."""
    rows = "\n".join(f"| {f} | {v['checked']} | {v['passed']} | {v['rate']} |" for f, v in
                     card["filter_pass_rates"].items())
    g = card["golden_overlap"]
    return "\n".join([
        f"# Dataset {card['dataset_id']}", "",
        f"{card['examples']} examples ({', '.join(f'{k} {v}' for k, v in card['by_split'].items())}; split by "
        f"{card.get('split_unit', 'document')}); "
        f"kinds: {', '.join(f'{k} {v}' for k, v in card['by_kind'].items())}.",
        f"Evidence withheld (target: the refusal) in {card['evidence_withheld']} ({card['withheld_share']:.0%}; "
        f"setting {card['withheld_share_setting']}); source inserted where retrieval missed it: "
        f"{card['source_inserted']}.",
        f"Passages per example: {', '.join(f'{n}: {c}' for n, c in card.get('passages_per_example', {}).items())} "
        f"(sdg.fewer_passages_share {card.get('fewer_passages_share_setting', 0.0)}).",
        f"Reviewed only: {card['reviewed_only']} (approved or edited {card['pairs']['approved_or_edited']}, never "
        f"reviewed {card['pairs']['never_reviewed']}).",
        f"Coverage: {card['coverage']['documents_with_examples']} of {card['coverage']['training_documents']} "
        f"training documents, {card['coverage']['sections_with_examples']} sections.",
        f"Generator: {', '.join(card['generator'])}.", "",
        "| filter | checked | passed | rate |", "|---|---|---|---|", rows, "",
        f"Golden questions whose gold evidence is among the training sources: {len(g['evidence_seen_in_training'])} "
        f"({', '.join(g['evidence_seen_in_training']) or 'none'}); unseen: {len(g['evidence_unseen'])}. "
        f"Golden sets: {', '.join(g['golden_files']) or 'none registered'}.", ""])


def export_dataset(ws: Workspace, dataset_id: str, fmt: str, out: Path | None = None) -> list[Path]:
    """Write a dataset version in `fmt` (prompt-completion, chat, alpaca, openai) as JSONL, one file per split."""
    from appliance.training.data import dataset_folder

    folder = dataset_folder(ws, dataset_id)
    out = out or folder / "export" / fmt
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines() if line.strip()]
        path = out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(_convert(r, fmt), ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        written.append(path)
    return written


def _convert(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    prompt, answer = row["prompt"], row["completion"][0]["content"]
    extras = {k: row[k] for k in ("id", "kind", "source_chunk_ids", "evidence_withheld")}
    if fmt == "prompt-completion":
        return row
    if fmt == "chat":
        return {"messages": [*prompt, {"role": "assistant", "content": answer}]} | extras
    if fmt == "openai":
        return {"messages": [*prompt, {"role": "assistant", "content": answer}]}
    if fmt == "alpaca":
        system = next((m["content"] for m in prompt if m["role"] == "system"), "")
        user = next(m["content"] for m in prompt if m["role"] == "user")
        return {"instruction": system, "input": user, "output": answer} | extras
    raise UsageError(f"unknown format {fmt!r}")
