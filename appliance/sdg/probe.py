"""The abstention probe: questions from documents held out of training (the `probe` split), each asked twice - with
its evidence withheld (near-miss passages; the right answer is a refusal) and with it present (the passages the
retriever gives, the source ensured) - so answering and abstaining can be measured with n large enough for a
confidence interval (the golden sets have 4-6 unanswerable questions: 0/4 has a 95 % interval of 0-49 %).

The validation documents are never trained on either, so their pairs are asked too (sdg.probe_validation): the
probe's n grows without taking more documents out of training. Validation loss does pick the checkpoint (a mild
selection), so each question says which split it came from.

The probe is a golden set (JSONL, the contract's schema) whose questions carry their passages (`passages`, used
by `eval answers` under rag in place of retrieval) and `synthetic: true`, so every report marks it synthetic.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from appliance.answering import Answerer
from appliance.audit import AuditStore
from appliance.errors import UsageError
from appliance.llm import Generator, load_generator
from appliance.progress import Progress
from appliance.sdg.dataset import pair_states
from appliance.sdg.examples import ExampleBuilder
from appliance.workspace import Workspace

STAGE = "sdg probe"
_GOLDEN_KIND = {"fact": "fact", "number": "number", "table": "table", "procedure": "procedure", "definition": "fact",
               "free": "fact"}


def write_probe(ws: Workspace, groups: list[str] | None = None, limit: int | None = None,
                progress: Progress | None = None, command: str = "",
                generator: Generator | None = None) -> dict[str, Any]:
    """Write the probe from the held-out pairs (the probe split, and the validation split when sdg.probe_validation)
    that passed every filter (and no one rejected); return what was written (path, sha256, counts)."""
    progress = progress or Progress()
    splits = {"probe", "validation"} if ws.config.sdg.probe_validation else {"probe"}
    with AuditStore(ws.audit_path) as store:
        pairs = [p for p in pair_states(store) if p["split"] in splits and p["passed"] and p["review"] != "reject"]
    pairs = sorted(pairs, key=lambda p: p["pair_id"])[: limit or None]
    if not pairs:
        raise UsageError("no probe pairs: run `appliance sdg generate` (sdg.probe_share of the documents are held "
                         "out for the probe)")
    gen = generator or load_generator(ws)
    answerer = Answerer.open(ws, gen, need_index=True)
    assert answerer.retriever is not None
    groups = sorted(groups or [])
    builder = ExampleBuilder(answerer, [c for c, _ in answerer.retriever.visible(groups)], groups)
    rows, skipped = [], 0
    progress.start(STAGE, len(pairs), "pairs")
    for i, p in enumerate(pairs, 1):
        source = builder.by_id.get(p["chunk_id"])
        made = _questions(builder, p, source) if source else None
        if made is None:
            skipped += 1
        else:
            rows += made
        progress.advance(STAGE, i, len(pairs), "pairs", p["pair_id"])
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = ws.root / "probes" / f"probe-{digest[:16]}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result = {"path": str(path), "sha256": digest, "questions": len(rows) // 2, "asked": len(rows),
              "skipped_pairs": skipped, "documents": len({p["doc_id"] for p in pairs}),
              "by_split": {s: sum(r["split"] == s for r in rows) // 2 for s in sorted(splits)}}
    with ws.run("sdg-probe", command) as run:
        run.event("probe_written", **result)
        result["run_id"] = run.run_id
    return result


def _questions(builder: ExampleBuilder, p: dict[str, Any], source: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The two golden questions of one pair (evidence withheld, evidence present), or None when no near miss
    without the answer exists."""
    evidence = p["evidence"] or p["answer"]
    withheld = builder.near_misses(p["question"], p["answer"], evidence, source)
    if not withheld:
        return None
    present, note = builder.present_context(p["question"], evidence, source)
    common = {"question": p["question"], "aliases": [], "synthetic": True, "probe_pair": p["pair_id"],
              "split": p["split"]}
    return [
        common | {"id": f"{p['pair_id']}-withheld", "answer": "UNANSWERABLE", "kind": "unanswerable",
                  "source_file": None, "evidence": None, "passages": [asdict(x) for x in withheld]},
        common | {"id": f"{p['pair_id']}-present", "answer": p["answer"], "kind": _GOLDEN_KIND[p["kind"]],
                  "source_file": p["file_name"], "evidence": evidence, "passages": [asdict(x) for x in present.passages],
                  "source_inserted": bool(note)},
    ]
