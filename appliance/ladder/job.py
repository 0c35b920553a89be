"""`appliance ladder`: every rung as one resumable job.

ingest -> gold check -> retrieval eval -> answers (closed-book, oracle, rag; per model) -> inference-time scaling on
the failing questions -> synthetic pairs -> dataset -> abstention probe -> train -> export -> adapted re-evaluation
(golden set and probe, base and adapted) -> compare -> decide.

Each rung has a key: the sha256 of what it reads (files, the settings it uses, the model files, the keys of the
rungs before it). A finished rung is recorded as a `ladder_rung_done` event with its key and outputs (run ids,
dataset id, adapter); a rerun finds the key and skips the rung, so after a kill -9 or Ctrl-C only the unfinished
rung runs again, and it resumes its own killed run (eval answers, sdg generate and train resume in the same run).
Ingest runs before the gold check because the check reads the evidence from the index.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from appliance.audit import AuditStore, records
from appliance.config import Config
from appliance.errors import UsageError
from appliance.llm import Generator, adapter_ref
from appliance.models import ModelEntry, sha256_file, tree_sha256
from appliance.progress import Progress
from appliance.resume import process_event
from appliance.workspace import Workspace

STAGE = "ladder"
RUNGS = ("ingest", "gold", "retrieval", "answers", "scaling", "sdg", "dataset", "probe", "train", "export",
         "adapted", "compare", "decide")
VERSION = 1   # bump when a rung's meaning changes, so old results are not reused for it
# `ladder --quick`: what it changes, so that a first run on 2 cores ends within the hour (docs/LADDER.md); every
# figure of its record is still measured, on less synthetic data and a shorter training run.
QUICK = ["sdg.target_pairs=80", "sdg.probe_questions=20", "train.max_steps=20", "train.eval_examples=8",
         "ladder.strategies=best-of-n"]
REPO_SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# The settings each rung reads (its key includes their hashes).
SECTIONS = {"ingest": ("ingest",), "gold": ("retrieval",), "retrieval": ("retrieval",),
            "answers": ("llm", "retrieval", "eval"), "scaling": ("llm", "retrieval", "eval"),
            "sdg": ("llm", "sdg", "retrieval", "eval"), "dataset": ("sdg", "retrieval", "eval"),
            "probe": ("sdg", "retrieval", "eval"), "train": ("train",), "export": (), "adapted": ("llm", "retrieval", "eval"),
            "compare": ("eval",), "crosscheck": ("llm", "eval")}


def corpus_sha256(docs: Path) -> str:
    """The corpus as content: every file's relative path and sha256."""
    if not docs.is_dir():
        return tree_sha256({docs.name: sha256_file(docs)})
    return tree_sha256({str(p.relative_to(docs)): sha256_file(p) for p in docs.rglob("*") if p.is_file()})


def key_of(rung: str, cfg: Config, **inputs: Any) -> str:
    sections = cfg.section_sha256(*SECTIONS.get(rung, ()))
    payload = {"rung": rung, "version": VERSION, "sections": sections, "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def probe_label(scale: float) -> str:
    """The ladder's label of the probe run with the adapter at `scale`."""
    return "probe:" + adapter_ref("adapted", scale)


@dataclass
class Plan:
    """What this ladder is asked to do."""

    docs: Path
    questions: Path
    models: list[str]                 # the first is the one adapted; the others are compared without adaptation
    until: str = "decide"
    groups: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"docs": str(self.docs), "questions": str(self.questions), "models": self.models, "until": self.until,
                "groups": self.groups}


class Ladder:
    """Runs the rungs in order inside one `ladder` audit run; each rung's own work is recorded in its own run."""

    def __init__(self, ws: Workspace, plan: Plan, progress: Progress, command: str,
                 writer: Generator | None = None) -> None:
        self.ws = ws
        self.writer = writer                            # the synthetic-data writer (default: models.generator)
        self.plan = plan
        self.progress = progress
        self.command = command
        self.cfg = ws.config
        self.out: dict[str, dict[str, Any]] = {}       # rung label -> outputs
        self.seconds: dict[str, float] = {}            # rung label -> seconds it took (when it ran)
        self.planned: list[dict[str, Any]] = []        # preview()'s rows, recorded with the run
        self.run: Any = None

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def finished(self, key: str) -> dict[str, Any] | None:
        """The outputs a rung with this key recorded when it finished (in any ladder run), if it did."""
        with AuditStore(self.ws.audit_path) as store:
            rows = records(store.con, "SELECT payload_json FROM events WHERE kind = 'ladder_rung_done' AND "
                                      "json_extract_string(payload_json, '$.key') = ? ORDER BY created_at DESC LIMIT 1",
                           [key])
        return json.loads(rows[0]["payload_json"]) if rows else None

    def unfinished_child(self, key: str, kind: str) -> str | None:
        """A killed run of `kind` that this rung (same key) started earlier: the rung resumes it."""
        with AuditStore(self.ws.audit_path) as store:
            started = records(store.con, "SELECT created_at FROM events WHERE kind = 'ladder_rung_start' AND "
                                         "json_extract_string(payload_json, '$.key') = ? ORDER BY created_at DESC LIMIT 1",
                              [key])
            if not started:
                return None
            open_runs = [r for r in store.runs((kind,)) if r.status is None and r.started_at >= started[0]["created_at"]]
        return open_runs[-1].run_id if open_runs else None

    def killed_ladder(self, start: dict[str, Any]) -> str | None:
        """A killed ladder run of the same plan, which this one continues (so it is closed in the end); a killed
        one of another plan is closed as abandoned. A ladder still running in this workspace is refused."""
        from appliance.resume import find_resumable

        with AuditStore(self.ws.audit_path) as store:
            killed = [r.run_id for r in store.runs(("ladder",)) if r.status is None]
        for run_id in reversed(killed):
            r = find_resumable(self.ws, run_id, "ladder", "ladder_start", (), "ladder_rung_done")
            if {k: r.start.get(k) for k in start} == start:
                return run_id
            with AuditStore(self.ws.audit_path) as store:
                store.reopen_run(run_id).close("abandoned", reason="a ladder with another plan started after it")
        return None

    def last_seconds(self, rung: str) -> float | None:
        """How long this rung took the last time it ran in this workspace (the plan's estimate where no model of
        the work exists)."""
        with AuditStore(self.ws.audit_path) as store:
            rows = store.con.execute(
                "SELECT CAST(json_extract(payload_json, '$.seconds') AS DOUBLE) FROM events WHERE kind = "
                "'ladder_rung_done' AND json_extract_string(payload_json, '$.rung') = ? AND "
                "NOT CAST(json_extract(payload_json, '$.reused') AS BOOLEAN) ORDER BY created_at DESC LIMIT 1",
                [rung]).fetchall()
        return rows[0][0] if rows else None

    def step(self, rung: str, label: str, key: str, work: Callable[[str | None], dict[str, Any]],
             child_kind: str | None = None) -> dict[str, Any]:
        """Skip the rung if its key finished before, else run it (resuming its killed child run) and record it."""
        done = self.finished(key)
        if done is not None:
            self.progress.note(f"{label}: done before (key {key[:12]}), reused", STAGE)
            self.run.event("ladder_rung_done", rung=rung, label=label, key=key, outputs=done["outputs"],
                           seconds=done["seconds"], reused=True)
            self.run.flush()
            self.out[label] = done["outputs"]
            self.seconds[label] = done["seconds"]
            return done["outputs"]
        resume = self.unfinished_child(key, child_kind) if child_kind else None
        self.run.event("ladder_rung_start", rung=rung, label=label, key=key, resumes=resume)
        self.run.flush()
        self.progress.note(f"{label}: " + (f"resuming run {resume}" if resume else "starting"), STAGE)
        t0 = time.perf_counter()
        outputs = work(resume)
        seconds = round(time.perf_counter() - t0, 1)
        self.run.event("ladder_rung_done", rung=rung, label=label, key=key, outputs=outputs, seconds=seconds,
                       reused=False)
        self.run.flush()
        self.out[label] = outputs
        self.seconds[label] = seconds
        return outputs

    @cached_property
    def questions_sha(self) -> str:
        return sha256_file(self.plan.questions)

    @cached_property
    def models(self) -> list[ModelEntry]:
        """The plan's generators, their files checked."""
        return [self.ws.models.verified_path(m)[0] for m in self.plan.models]

    @cached_property
    def early_keys(self) -> dict[str, str]:
        """The keys of the rungs that depend only on the inputs (the later ones depend on their outputs); the
        corpus is hashed once for both the plan and the run."""
        from appliance.ingest import PIPELINE_VERSION
        from appliance.sdg.generate import SPLIT_RULE

        cfg, p, questions_sha, models = self.cfg, self.plan, self.questions_sha, self.models
        ingest = key_of("ingest", cfg, corpus=corpus_sha256(p.docs), groups=p.groups,
                        embedder=self.ws.models.get(cfg.models.embedder).sha256, pipeline=PIPELINE_VERSION)
        common = {"questions": questions_sha, "index": ingest}
        keys = {"ingest": ingest, "gold": key_of("gold", cfg, **common), "retrieval": key_of("retrieval", cfg, **common)}
        for m in models:
            keys[f"answers:{m.name}"] = key_of("answers", cfg, model=m.sha256, **common)
        for s in cfg.ladder.strategies:
            keys[f"scaling:{s}"] = key_of("scaling", cfg, answers=keys[f"answers:{models[0].name}"], strategy=s)
        keys["sdg"] = key_of("sdg", cfg, index=ingest, generator=self.ws.models.get(cfg.models.generator).sha256,
                             golden=questions_sha, split_rule=SPLIT_RULE)
        keys["probe"] = key_of("probe", cfg, sdg=keys["sdg"])
        return keys

    def preview(self) -> list[dict[str, Any]]:
        """The plan as it stands before starting: each rung, whether a finished result will be reused, and an
        estimate (how long it took the last time it ran here; eval, sdg and train print their own when they
        start)."""
        keys = self.early_keys
        rows = []
        for rung in RUNGS[: RUNGS.index(self.plan.until) + 1]:
            labels = [k for k in keys if k == rung or k.startswith(rung + ":")] or [rung]
            for label in labels:
                key = keys.get(label)
                done = self.finished(key) if key else None
                last = None if done else self.last_seconds(rung)
                rows.append({"rung": label, "key": key, "state": "reuse" if done else "run", "estimate_s": last,
                             "basis": "its last run here" if last is not None else None})
        todo = [r for r in rows if r["state"] == "run" and r["estimate_s"] is None
                and r["rung"].split(":")[0] in ("answers", "scaling", "adapted")]
        if todo:
            self.estimate_evals(todo)
        self.planned = rows
        return rows

    def estimate_evals(self, rows: list[dict[str, Any]]) -> None:
        """Seconds for the evaluation rungs from their tokens at a speed measured now (each model loaded once;
        chunks taken at ingest.max_tokens; scaling and adapted at most the whole golden set)."""
        from appliance.evaluation.estimate import estimate_run, measure_speed
        from appliance.evaluation.golden import load_questions
        from appliance.llm import load_generator
        from appliance.llm.prompts import CONTEXT

        questions = load_questions(self.plan.questions)
        chunk = float(self.cfg.ingest.max_tokens)
        # a prompt like the run's own: the golden set's evidence as passages, about context_k chunks of it
        words = " ".join(e for q in questions for e in q.evidence).split()
        size = int(chunk * self.cfg.eval.context_k * 0.75)
        warm, measured = " ".join(words[:size]), " ".join(reversed(words[:size]))   # no shared prefix to reuse
        by_model = {m.name: [r for r in rows if r["rung"] == f"answers:{m.name}"] for m in self.models}
        by_model[self.models[0].name] += [r for r in rows if not r["rung"].startswith("answers:")]
        for name, mine in by_model.items():
            if not mine:
                continue
            gen = load_generator(self.ws, name)
            measure_speed(gen, gen.render(CONTEXT, question=questions[0].question, context=warm)[0])  # warms up
            speed = measure_speed(gen, gen.render(CONTEXT, question=questions[0].question, context=measured)[0])
            for r in mine:
                strategy = r["rung"].split(":", 1)[1] if r["rung"].startswith("scaling:") else "single"
                conditions = ["rag"] if strategy != "single" else ["closed-book", "oracle", "rag"]
                est = estimate_run(gen, self.cfg, questions, conditions, strategy, chunk, speed)
                r["estimate_s"] = est.seconds
                r["basis"] = (f"{est.answers} answers at {est.prompt_tokens_per_s:.0f} prompt and "
                              f"{est.completion_tokens_per_s:.1f} generated tok/s measured now"
                              + ("; at most: only the failing questions are asked" if strategy != "single" else ""))

    def wanted(self, rung: str) -> bool:
        return RUNGS.index(rung) <= RUNGS.index(self.plan.until)

    # -- the rungs ---------------------------------------------------------------------------------------------
    def ladder(self) -> dict[str, Any]:
        from appliance.ladder.record import write_record

        p, cfg, questions_sha, models = self.plan, self.cfg, self.questions_sha, self.models
        t_all = time.perf_counter()
        start = p.record() | {"questions_sha256": questions_sha, "models_sha256": {m.name: m.sha256 for m in models}}
        killed = self.killed_ladder(start)
        with self.ws.resumed_run(killed) if killed else self.ws.run("ladder", self.command) as run:
            self.run = run
            kind, payload = (("run_resumed", process_event(self.command)) if killed else
                             ("ladder_start", process_event(self.command, **start)))
            run.event(kind, **payload)
            if self.planned:         # the plan as shown before starting (each start of a resumed run adds its own)
                run.event("ladder_plan", rungs=self.planned)
            run.flush()
            self.progress.start(STAGE, RUNGS.index(p.until) + 1, "rungs")
            n = 0

            def advance(rung: str) -> None:
                nonlocal n
                n += 1
                self.progress.advance(STAGE, n, RUNGS.index(p.until) + 1, "rungs", rung)

            keys = self.early_keys
            self.step("ingest", "ingest", keys["ingest"], lambda _: self._ingest())
            advance("ingest")
            if self.wanted("gold"):
                self.step("gold", "gold", keys["gold"], lambda _: self._gold())
                advance("gold")
            if self.wanted("retrieval"):
                self.step("retrieval", "retrieval", keys["retrieval"], lambda _: self._retrieval())
                advance("retrieval")
            if self.wanted("answers"):
                for m in models:
                    self.step("answers", f"answers:{m.name}", keys[f"answers:{m.name}"],
                              lambda resume, m=m: self._answers(m.name, resume), "eval-answers")
                if cfg.ladder.judge_crosscheck:     # the judge model on check-settled answers: the layers' agreement
                    source = self.out[f"answers:{models[0].name}"]["run_id"]
                    self.step("answers", "crosscheck", key_of("crosscheck", cfg, n=cfg.ladder.judge_crosscheck,
                                                             answers=keys[f"answers:{models[0].name}"]),
                              lambda _: self._crosscheck(source))
                advance("answers")
            primary = models[0]
            common = {"questions": questions_sha, "index": keys["ingest"]}
            if self.wanted("scaling"):
                for s in cfg.ladder.strategies:
                    self.step("scaling", f"scaling:{s}", keys[f"scaling:{s}"],
                              lambda resume, s=s: self._scaling(primary.name, s, resume), "eval-answers")
                advance("scaling")
            if self.wanted("sdg"):
                self.step("sdg", "sdg", keys["sdg"], lambda resume: self._sdg(resume), "sdg-generate")
                advance("sdg")
            if self.wanted("dataset"):
                reviewed, state = self._review_state()
                self.step("dataset", "dataset", key_of("dataset", cfg, sdg=keys["sdg"], reviews=state,
                                                       reviewed_only=reviewed >= cfg.ladder.reviewed_pairs_min),
                          lambda _: self._dataset(reviewed))
                advance("dataset")
            if self.wanted("probe"):
                self.step("probe", "probe", keys["probe"], lambda _: self._probe())
                advance("probe")
            trainable = bool(self.out.get("dataset", {}).get("dataset_id")) and not self.out["dataset"].get("reason")
            if self.wanted("train") and trainable:
                self.step("train", "train", key_of("train", cfg, dataset=self.out["dataset"]["dataset_id"],
                                                   model=primary.sha256),
                          lambda resume: self._train(primary.name, resume), "train")
                advance("train")
            if self.wanted("export") and trainable:
                adapter = self.out["train"]["adapter"]
                self.step("export", "export", key_of("export", cfg, adapter=adapter), lambda _: self._export(adapter))
                advance("export")
            if self.wanted("adapted") and trainable:
                adapter = self.out["train"]["adapter"]
                probe = self.out["probe"]
                if probe.get("path"):   # the probe first: it chooses the strength the golden set is asked at
                    tried = [("probe:base", None)] + [(probe_label(s), adapter_ref(adapter, s))
                                                      for s in cfg.ladder.adapter_scales]
                    for label, ad in tried:
                        self.step("adapted", label, key_of("adapted", cfg, adapter=ad, probe=probe["sha256"],
                                                           model=primary.sha256),
                                  lambda resume, ad=ad: self._probe_eval(primary.name, ad, resume), "eval-answers")
                chosen = self._choose_scale()
                ref = adapter_ref(adapter, chosen["scale"])
                self.step("adapted", "adapted", key_of("adapted", cfg, adapter=ref, **common),
                          lambda resume: self._adapted(primary.name, ref, resume) | chosen, "eval-answers")
                advance("adapted")
            if self.wanted("compare") and trainable:
                a, b = self.out[f"answers:{primary.name}"]["run_id"], self.out["adapted"]["run_id"]
                self.step("compare", "compare", key_of("compare", cfg, a=a, b=b), lambda _: self._compare(a, b))
                advance("compare")
            record = None
            if self.wanted("decide"):
                record = write_record(self.ws, run, self.out, p.models, self.seconds, run.run_id)
                advance("decide")
            seconds = round(time.perf_counter() - t_all, 1)
            run.event("ladder_summary", rungs=self.out, seconds=seconds,
                      record=None if record is None else {k: record[k] for k in ("verdict", "rule", "paths")})
            return {"run_id": run.run_id, "rungs": self.out, "seconds": seconds, "record": record}

    def _ingest(self) -> dict[str, Any]:
        from appliance.ingest import ingest

        r = ingest(self.ws, [self.plan.docs], groups=self.plan.groups, progress=self.progress, command=self.command)
        if not r.chunks_total:
            raise UsageError(f"nothing could be indexed from {self.plan.docs}")
        return {"run_id": r.run_id, "chunks": r.chunks_total, "files": r.counts()}

    def _gold(self) -> dict[str, Any]:
        from appliance.evaluation.goldcheck import check_gold

        r = check_gold(self.ws, self.plan.questions, progress=self.progress, command=self.command)
        return {"run_id": r["run_id"], "n": r["n"], "flagged": r["flagged"]}

    def _retrieval(self) -> dict[str, Any]:
        from appliance.evaluation.retrieval import evaluate_retrieval

        r = evaluate_retrieval(self.ws, self.plan.questions, groups=self.plan.groups, command=self.command)
        return {"run_id": r["run_id"], "recall_at_k": r["recall_at_k"], "k": r["k"]}

    def _crosscheck(self, run_id: str) -> dict[str, Any]:
        from appliance.evaluation.crosscheck import crosscheck_run

        r = crosscheck_run(self.ws, run_id, progress=self.progress, command=self.command)
        return {"run_id": r["run_id"], "asked": r["asked"], "agreement": r["agreement"]}

    def _eval(self, questions: Path, conditions: list[str], strategy: str, model: str, adapter: str | None,
              resume: str | None) -> dict[str, Any]:
        from appliance.evaluation.answers import evaluate_answers

        r = evaluate_answers(self.ws, questions, conditions=conditions, strategy=strategy, model=model,
                             groups=self.plan.groups, progress=self.progress, command=self.command, resume=resume,
                             adapter=adapter)
        return {"run_id": r["run_id"], "questions_file": str(questions), "seconds": r["seconds"],
                "accuracy": {c: s["accuracy"] for c, s in r["conditions"].items()}}

    def _answers(self, model: str, resume: str | None) -> dict[str, Any]:
        return self._eval(self.plan.questions, ["closed-book", "oracle", "rag"], "single", model, None, resume)

    def _scaling(self, model: str, strategy: str, resume: str | None) -> dict[str, Any]:
        """The strategy on the questions the base model got wrong under rag (written as their own golden set)."""
        base = self.out[f"answers:{model}"]["run_id"]
        with AuditStore(self.ws.audit_path) as store:
            failing = {r["question_id"] for r in store.rows("judgements", base, condition="rag")
                       if r["verdict"] != "correct"}
        lines = [line for line in self.plan.questions.read_text(encoding="utf-8").splitlines()
                 if line.strip() and json.loads(line)["id"] in failing]
        if not lines:
            return {"run_id": None, "failing": 0}
        path = self.ws.root / "ladder" / f"failing-{base[:12]}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self._eval(path, ["rag"], strategy, model, None, resume) | {"failing": len(lines)}

    def _sdg(self, resume: str | None) -> dict[str, Any]:
        from appliance.sdg.generate import generate_pairs

        r = generate_pairs(self.ws, groups=self.plan.groups, golden=[self.plan.questions], progress=self.progress,
                           command=self.command, resume=resume, generator=self.writer)
        return {"run_id": r["run_id"], "candidates": r["candidates"], "kept": r["kept"]}

    def _review_state(self) -> tuple[int, str]:
        """Reviewed (approved or edited) pairs, and a hash of every pair's review state (a review changes it)."""
        from appliance.sdg.dataset import pair_states, select_pairs

        with AuditStore(self.ws.audit_path) as store:
            states = pair_states(store)
        reviewed = len(select_pairs(states, unreviewed=False))   # what a reviewed-only dataset would take
        listing = sorted((p["pair_id"], p["review"] or "", p["question"], p["answer"]) for p in states)
        return reviewed, hashlib.sha256(json.dumps(listing).encode()).hexdigest()

    def _dataset(self, reviewed: int) -> dict[str, Any]:
        """Reviewed pairs only once there are enough; before that every passing pair, recorded as unreviewed."""
        from appliance.sdg.dataset import build_dataset

        unreviewed = reviewed < self.cfg.ladder.reviewed_pairs_min
        if unreviewed:
            self.progress.note(f"dataset: {reviewed} reviewed pairs (< ladder.reviewed_pairs_min "
                               f"{self.cfg.ladder.reviewed_pairs_min}): training on unreviewed pairs, recorded; the "
                               "decision will not recommend fine-tuning on them", STAGE)
        try:
            card = build_dataset(self.ws, unreviewed=unreviewed, groups=self.plan.groups, progress=self.progress,
                                 command=self.command, generator=self.writer)
        except UsageError as e:   # no usable pair: nothing to train on, which the record says
            self.progress.note(f"dataset: {e}; training and the adapted re-evaluation are skipped", STAGE)
            return {"run_id": None, "dataset_id": None, "reason": str(e), "reviewed_pairs": reviewed}
        made = {"run_id": card["run_id"], "dataset_id": card["dataset_id"], "examples": card["examples"],
                "reviewed_only": card["reviewed_only"], "reviewed_pairs": reviewed}
        if not card["by_split"].get("validation"):   # training stops on validation loss: it would refuse
            made["reason"] = "it has no validation examples (no passing pair came from the validation split)"
            self.progress.note(f"dataset: {made['reason']}; training and the adapted re-evaluation are skipped",
                               STAGE)
        return made

    def _probe(self) -> dict[str, Any]:
        from appliance.sdg.probe import write_probe

        try:
            r = write_probe(self.ws, groups=self.plan.groups, progress=self.progress, command=self.command,
                            generator=self.writer)
        except UsageError as e:   # no held-out pairs survived: said in the record, not fatal
            return {"run_id": None, "path": None, "sha256": None, "reason": str(e)}
        return {"run_id": r["run_id"], "path": r["path"], "sha256": r["sha256"], "questions": r["questions"],
                "by_split": r["by_split"]}

    def _train(self, model: str, resume: str | None) -> dict[str, Any]:
        from appliance.training.adapter import train_adapter

        r = train_adapter(self.ws, self.out["dataset"]["dataset_id"], model=model, resume=resume,
                          progress=self.progress, command=self.command)
        return {"run_id": r["run_id"], "adapter": r["adapter"], "seconds": r.get("seconds"), "steps": r["steps"]}

    def _export(self, adapter: str) -> dict[str, Any]:
        from appliance.export.job import export_gguf

        r = export_gguf(self.ws, adapter, progress=self.progress, command=self.command)
        return {"run_id": r["run_id"], "registered": r["registered"],
                "checks": [{k: c[k] for k in ("form", "agreement", "passed")} for c in r["checks"]]}

    def _adapted(self, model: str, adapter: str, resume: str | None) -> dict[str, Any]:
        return self._eval(self.plan.questions, ["closed-book", "oracle", "rag"], "single", model, adapter, resume)

    def _probe_eval(self, model: str, adapter: str | None, resume: str | None) -> dict[str, Any]:
        return self._eval(Path(self.out["probe"]["path"]), ["rag"], "single", model, adapter, resume)

    def _choose_scale(self) -> dict[str, Any]:
        """The adapter's strength for the golden set: the one with the most probe questions right (withheld:
        refused; present: answered right), ties to the earlier in ladder.adapter_scales; trained strength (1)
        without a probe. Chosen on held-out documents, never on the golden set."""
        scales = self.cfg.ladder.adapter_scales
        probed = {s: self.out.get(probe_label(s)) for s in scales}
        right = {s: run["accuracy"]["rag"] or 0.0 for s, run in probed.items() if run}
        if not right:
            return {"scale": 1.0, "probe_right": None}
        best = max(right.values())
        return {"scale": next(s for s in scales if right.get(s) == best),
                "probe_right": {f"{s:g}": v for s, v in right.items()}}   # string keys, as JSON reads them back

    def _compare(self, a: str, b: str) -> dict[str, Any]:
        from appliance.evaluation.compare import compare_runs

        r = compare_runs(self.ws, a, b, command=self.command)
        return {"run_id": r["run_id"], "rag": {k: r["conditions"]["rag"][k] for k in
                                               ("accuracy_a", "accuracy_b", "p_value", "regressions")}
                if "rag" in r["conditions"] else None}


def default_plan(ws: Workspace, docs: Path | None, questions: Path | None, models: list[str] | None,
                 until: str | None, groups: list[str]) -> Plan:
    """The plan from the command line; with no arguments the bundled sample corpus and golden set."""
    docs = docs or REPO_SAMPLES / "corpus"
    questions = questions or REPO_SAMPLES / "questions.jsonl"
    for path, what in ((docs, "--docs"), (questions, "--questions")):
        if not path.exists():
            raise UsageError(f"{what} {path}: no such file or folder")
    until = until or "decide"
    if until not in RUNGS:
        raise UsageError(f"--until {until!r}: choose one of {', '.join(RUNGS)}")
    names = models or [ws.config.models.generator]
    for m in names:
        entry = ws.models.get(m)
        if entry.role in ("embedder", "adapter"):
            raise UsageError(f"model {entry.name!r} is a {entry.role}, not a generator")
    return Plan(docs, questions, [ws.models.get(m).name for m in names], until, groups)


def run_ladder(ws: Workspace, plan: Plan, progress: Progress | None = None, command: str = "") -> dict[str, Any]:
    return Ladder(ws, plan, progress or Progress(), command).ladder()
