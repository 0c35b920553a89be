"""The decision record: where the failure lives, the verdict with the rule that fired, and the figures behind it,
as Markdown and one self-contained HTML file (plots inline), each figure with its id, the runs it rests on and
the SQL that reads it back from the audit store. The record is itself an audit row (a `decision_record` event with
its figures and the sha256 of both files)."""
from __future__ import annotations

import html
import io
import time
from typing import Any

from appliance.audit import AuditStore, records
from appliance.choices import CONDITIONS
from appliance.config import LadderConfig
from appliance.evaluation.attribution import FAILURE_KINDS
from appliance.evaluation.report import bars, html_page, stacked, table_html, table_md, write_pair
from appliance.ladder.evidence import Figures, collect, interval
from appliance.ladder.rules import RULES, Decision, Evidence, decide
from appliance.workspace import Workspace


def _v(f: Figures, key: str, fmt: str = "{}") -> str:
    """A figure's value with its id, e.g. `67.5% [F12]`."""
    fig = f.all.get(key)
    if fig is None or fig.value is None:
        return "n/a"
    return f"{fmt.format(fig.value)} [{fig.id}]"


def _pct(f: Figures, key: str) -> str:
    return _v(f, key, "{:.1%}")


def roi(f: Figures, primary: str, cfg: LadderConfig) -> tuple[list[list[Any]], list[str]]:
    """Per-answer cost with and without retrieval, with and without the adapter, at the user's prices, and the
    break-even of the one-time adaptation cost (training compute and review labour)."""
    rows, notes = [], []
    per_month: dict[str, float] = {}
    for label, prefix, cond in (("base, rag", primary, "rag"), ("base, no retrieval", primary, "closed-book"),
                                ("adapted, rag", "adapted", "rag"), ("adapted, no retrieval", "adapted", "closed-book")):
        secs = f.get(f"{prefix}.{cond}.latency_s")
        if secs is None:
            continue
        cost = secs / 3600 * cfg.hardware_cost_per_hour
        per_month[label] = cost * cfg.questions_per_month
        rows.append([label, _pct(f, f"{prefix}.{cond}.accuracy"), _v(f, f"{prefix}.{cond}.prompt_tokens", "{:.0f}"),
                     _v(f, f"{prefix}.{cond}.completion_tokens", "{:.0f}"), _v(f, f"{prefix}.{cond}.latency_s", "{:.2f}"),
                     f"{cost:.6f}", f"{per_month[label]:.2f}"])
    train_s, reviewed = f.get("train.seconds"), f.get("sdg.kept")
    if train_s is not None:
        once = train_s / 3600 * cfg.hardware_cost_per_hour + (reviewed or 0) * cfg.review_seconds_per_pair / 3600 \
            * cfg.labour_cost_per_hour
        notes.append(f"One-time cost of adaptation: {train_s / 3600:.2f} h of training [{f.all['train.seconds'].id}] at "
                     f"{cfg.hardware_cost_per_hour} per hour, plus reviewing {reviewed or 0} pairs at "
                     f"{cfg.review_seconds_per_pair:.0f} s each and {cfg.labour_cost_per_hour} per hour: {once:.2f}.")
        for other in ("adapted, rag", "adapted, no retrieval"):
            if other in per_month and "base, rag" in per_month:
                saving = per_month["base, rag"] - per_month[other]
                notes.append(f"{other} against base, rag: saves {saving:.2f} a month at {cfg.questions_per_month} "
                             "answers" + (f"; break-even after {once / saving:.1f} months" if saving > 0 else
                                          "; it costs more per answer, so it never breaks even on cost") + ".")
    notes.append("Prices and volume are the user's (`[ladder]` questions_per_month, hardware_cost_per_hour, "
                 "labour_cost_per_hour, review_seconds_per_pair); seconds and tokens are measured. Accuracy is the "
                 "other side of the ledger: a cheaper configuration that answers worse is not a saving.")
    return rows, notes


def _train_curve(ws: Workspace, run_id: str) -> str:
    """Training and validation loss as an inline SVG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with AuditStore(ws.audit_path) as store:
        rows = records(store.con, "SELECT step, split, loss FROM train_steps WHERE run_id = ? ORDER BY step", [run_id])
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    for split in ("train", "validation"):
        pts = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        if pts:
            ax.plot(*zip(*pts), marker="o" if split == "validation" else None, markersize=3, label=split)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("loss")
    ax.set_title(f"training run {run_id[:8]}: loss")
    ax.legend()
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def render(ws: Workspace, out: dict[str, dict[str, Any]], models: list[str], rung_seconds: dict[str, float],
           ladder_run: str) -> tuple[str, str, Decision, Evidence, Figures]:
    """The record as (markdown, html) with the decision, the evidence and the figures it shows."""
    cfg = ws.config
    with AuditStore(ws.audit_path) as store:
        figs, ev = collect(store.con, out, models, cfg)
    d = decide(ev, cfg.ladder)
    primary = models[0]
    md: list[str] = [f"# Decision record (ladder run {ladder_run})",
                     f"**Verdict: {d.verdict}** (the failure lives in: {d.locus}). Rule `{d.rule}`: {d.because}.",
                     "Each figure carries an id [F…]; the table at the end gives, for each, the runs it rests on and "
                     "the SQL that reads it from the audit store (`appliance audit sql \"…\"`)."]
    body: list[str] = [f"<h1>Decision record (ladder run {html.escape(ladder_run)})</h1>",
                       f"<p><b>Verdict: {html.escape(d.verdict)}</b> (the failure lives in: {html.escape(d.locus)}). "
                       f"Rule <code>{html.escape(d.rule)}</code>: {html.escape(d.because)}.</p>"]

    def section(title: str, text: str = "", head: list[str] | None = None, rows: list[list[Any]] | None = None,
                svg: str = "") -> None:
        md.append(f"## {title}")
        body.append(f"<h2>{html.escape(title)}</h2>")
        if text:
            md.append(text)
            body.append(f"<p>{html.escape(text)}</p>")
        if svg:
            body.append(svg)
        if head and rows:
            md.append(table_md(head, rows))
            body.append(table_html(head, rows))

    rule_rows = [[r.name, r.locus, r.verdict, "FIRED" if r.name == d.rule else ("holds" if r.fires(ev, cfg.ladder)
                                                                             else "-")] for r in RULES]
    section("The rules, in order (the first that holds decides)", "docs/LADDER.md explains each.",
            ["rule", "locus", "verdict", "on this evidence"], rule_rows)
    if "gold" in out:
        section("Gold check", f"{_v(figs, 'gold.flagged')} of {_v(figs, 'gold.n')} gold answers flagged"
                + (f": {figs.get('gold.flagged_ids')}" if figs.get("gold.flagged_ids") else "") + "."
                + (f" Not flagged but worth a look (a clause found only outside the quoted evidence, or a claim that "
                   f"the source is silent): {figs.get('gold.noted_ids')}." if figs.get("gold.noted_ids") else ""))
    if "retrieval" in out:
        recall = figs.get("retrieval.recall")
        verdict = "n/a" if recall is None else ("meets" if recall >= cfg.ladder.recall_min else "is BELOW")
        section("Retrieval", f"Gold-evidence recall@{out['retrieval']['k']} {_pct(figs, 'retrieval.recall')} over "
                f"{_v(figs, 'retrieval.n')} answerable questions {verdict} the {cfg.ladder.recall_min:.0%} rule "
                "(fix the index and chunking first while it is below).")
    conds = [c for c in CONDITIONS if figs.get(f"{primary}.{c}.n")]
    if conds:
        rows = [[c, _pct(figs, f"{primary}.{c}.accuracy"),
                 interval(figs.get(f"{primary}.{c}.abstained"), figs.get(f"{primary}.{c}.unanswerable")),
                 *[_v(figs, f"{primary}.{c}.fail.{k}") for k in FAILURE_KINDS[1:]]] for c in conds]
        layers = "; ".join(f"{c}: {_v(figs, f'{primary}.{c}.by_checks')} by the deterministic checks, "
                           f"{_v(figs, f'{primary}.{c}.by_judge')} by the judge model" for c in conds)
        section(f"Failure attribution ({primary})",
                f"Who settled the verdicts: {layers}. The judge model is asked only what the checks cannot settle; "
                + _agreement_text(figs),
                ["condition", "answerable right", "unanswerable refused [95% CI]", *FAILURE_KINDS[1:]], rows,
                stacked("failures by kind", [(c, {k: figs.get(f"{primary}.{c}.fail.{k}") or 0
                                                   for k in FAILURE_KINDS}) for c in conds]))
    scal = [label.split(":", 1)[1] for label in out if label.startswith("scaling:")]
    if scal:
        rows = [[s, _v(figs, f"scaling.{s}.n"), _pct(figs, f"scaling.{s}.recovered"),
                 _v(figs, f"scaling.{s}.latency_s", "{:.2f}"), _v(figs, f"{primary}.rag.latency_s", "{:.2f}")]
                for s in scal]
        section("Inference-time scaling on the failing rag questions", "", ["strategy", "asked", "now right",
                "s/answer", "s/answer with single"], rows)
    if "dataset" in out or "sdg" in out:
        section("Synthetic data readiness",
                f"{_v(figs, 'sdg.candidates')} pairs written, {_v(figs, 'sdg.kept')} passed every filter, from "
                f"{_v(figs, 'sdg.documents')} documents. The dataset: {_v(figs, 'dataset.train')} training examples "
                f"from {_v(figs, 'dataset.documents')} documents; {_v(figs, 'dataset.reviewed')} pairs reviewed by a "
                f"person, {_v(figs, 'dataset.unreviewed')} never reviewed (at least {cfg.ladder.reviewed_pairs_min} "
                f"reviewed are needed before fine-tuning is recommended); golden questions whose evidence is among "
                f"the training sources: {_v(figs, 'dataset.golden_seen')}."
                + (f" Not trained: {out['dataset']['reason']}." if out.get("dataset", {}).get("reason") else ""))
    if "adapted" in out:
        rows = [[c, _pct(figs, f"{primary}.{c}.accuracy"), _pct(figs, f"adapted.{c}.accuracy"),
                 interval(figs.get(f"{primary}.{c}.abstained"), figs.get(f"{primary}.{c}.unanswerable")),
                 interval(figs.get(f"adapted.{c}.abstained"), figs.get(f"adapted.{c}.unanswerable"))] for c in conds]
        regs = figs.get("compare.regressions")
        scale = float(out["adapted"].get("scale", 1.0))
        text = (f"Training: {_v(figs, 'train.steps')} updates in {_v(figs, 'train.seconds', '{:.0f}')} s, best "
                f"validation loss {_v(figs, 'train.eval_loss', '{:.4f}')}. "
                + (f"The adapter is applied at x{scale:g} its trained strength (chosen on the probe, below). "
                   if scale != 1.0 else "") + "Under rag the adapter changes accuracy by "
                f"{_v(figs, 'compare.delta', '{:+.1%}')} (McNemar p {_v(figs, 'compare.p', '{:.4f}')}, 95 % interval "
                f"[{_v(figs, 'compare.ci_low', '{:+.3f}')}, {_v(figs, 'compare.ci_high', '{:+.3f}')}]); regressions: "
                f"{regs or 'none'}" + (f" [{figs.all['compare.regressions'].id}]" if "compare.regressions" in figs.all
                                       else "") + ". " + _split_text(figs))
        section("Adapted against base", text, ["condition", "base", "adapted", "base unanswerable refused",
                                               "adapted unanswerable refused"], rows,
                "".join(bars(f"{c}: answerable right", [("base", figs.get(f"{primary}.{c}.accuracy") or 0),
                                                          ("adapted", figs.get(f"adapted.{c}.accuracy") or 0)])
                        for c in conds) + (_train_curve(ws, out["train"]["run_id"]) if "train" in out else ""))
    probed = [label.split(":", 1)[1] for label in out if label.startswith("probe:")]
    probe_rows = [[who, interval(figs.get(f"probe-{who}.rag.abstained"), figs.get(f"probe-{who}.rag.unanswerable")),
                   interval(figs.get(f"probe-{who}.rag.right"), figs.get(f"probe-{who}.rag.answerable"))]
                  for who in probed if figs.get(f"probe-{who}.rag.n")]
    if probe_rows:
        section("Abstention probe (held-out documents; evidence withheld and present)",
                "Withheld: the answer's passage removed from the context, so refusing is right; present: answering "
                f"is right. 95 % Wilson intervals.{_probe_splits(out['probe'])}{_scale_text(out)}",
                ["model", "withheld: refused", "present: right"], probe_rows)
    elif "probe" in out and not out["probe"].get("path"):
        section("Abstention probe", f"not measured: {out['probe'].get('reason')}")
    cross = [m for m in models if figs.get(f"{m}.rag.n")]
    if cross:
        rows = []
        for m in cross:
            cb, rag = figs.get(f"{m}.closed-book.accuracy"), figs.get(f"{m}.rag.accuracy")
            rows.append([m, _pct(figs, f"{m}.closed-book.accuracy"), _pct(figs, f"{m}.rag.accuracy"),
                         "n/a" if cb is None or rag is None else f"{rag - cb:+.1%}",
                         _v(figs, f"{m}.rag.latency_s", "{:.2f}"), _v(figs, f"{m}.rag.tokens_per_s", "{:.1f}")])
        section("Models compared (same prompts, retrieval and judge)", "Only the first model is adapted by the ladder.",
                ["model", "closed-book", "rag", "rag lift", "s/answer (rag)", "generated tok/s"], rows,
                bars("rag: answerable right", [(m, figs.get(f"{m}.rag.accuracy") or 0) for m in cross]))
    roi_rows, roi_notes = roi(figs, primary, cfg.ladder)
    if roi_rows:
        section("ROI worksheet", " ".join(roi_notes), ["configuration", "answerable right", "prompt tokens",
                "completion tokens", "s/answer", "cost/answer", "cost/month"], roi_rows)
    if rung_seconds:
        section("Wall time per rung (this workspace, when each rung ran)", "",
                ["rung", "seconds"], [[k, f"{v:.0f}"] for k, v in rung_seconds.items()])
    section("Figures and where they come from", "", ["id", "figure", "value", "runs", "SQL"],
            [[g.id, g.label, g.shown(), " ".join(r[:8] for r in g.runs), g.sql] for g in figs.all.values()])
    return "\n\n".join(md) + "\n", html_page("Decision record", "".join(body)), d, ev, figs


def write_record(ws: Workspace, run: Any, out: dict[str, dict[str, Any]], models: list[str],
                 rung_seconds: dict[str, float], ladder_run: str) -> dict[str, Any]:
    """Render the record of `ladder_run`'s rung outputs, write reports/decision-<run>.md/.html and record it as a
    `decision_record` event of `run` (the ladder run itself, or the `decide` run that rendered it again)."""
    title = ladder_run if run.run_id == ladder_run else f"{ladder_run}, rendered again by decide run {run.run_id}"
    md, page, d, ev, figs = render(ws, out, models, rung_seconds, title)
    written = write_pair(ws, f"decision-{run.run_id[:8]}-{time.strftime('%Y%m%dT%H%M%S')}", md, page)
    record = {"ladder_run": ladder_run, "verdict": d.verdict, "locus": d.locus, "rule": d.rule, "because": d.because,
              "paths": [str(p) for p, _ in written], "sha256": [s for _, s in written],
              "figures": [g.to_dict() for g in figs.all.values()], "rungs": out, "models": models}
    run.event("decision_record", **record)
    run.flush()
    return record


def redecide(ws: Workspace, ladder_run: str | None, command: str) -> dict[str, Any]:
    """`appliance decide`: the record of a ladder run (default the latest) rendered again from its stored rung
    outputs with today's rules and settings, recorded in a new `decide` run."""

    from appliance.errors import UsageError

    with AuditStore(ws.audit_path) as store:
        runs = store.runs(("ladder",))
        if not runs:
            raise UsageError("no ladder run in this workspace: run `appliance ladder`")
        info = store.find_run(ladder_run, ("ladder",)) if ladder_run else runs[-1]
        done = store.events(info.run_id, "ladder_rung_done")
        start = store.events(info.run_id, "ladder_start")
    if not done or not start:
        raise UsageError(f"ladder run {info.run_id} finished no rung")
    out = {e["label"]: e["outputs"] for e in done}
    seconds = {e["label"]: e["seconds"] for e in done}
    with ws.run("decide", command) as run:
        run.event("decide_start", ladder_run=info.run_id)
        return write_record(ws, run, out, start[0]["models"], seconds, info.run_id) | {"run_id": run.run_id}


def _split_text(figs: Figures) -> str:
    """The adapted-vs-base line split by whether the gold evidence was among the training sources."""
    if figs.get("split.seen.n") is None:
        return "No dataset card to split the questions by whether their evidence was trained on."
    parts = [f"{part}: {_v(figs, f'split.{part}.n')} questions, {_pct(figs, f'split.{part}.base')} -> "
             f"{_pct(figs, f'split.{part}.adapted')}" for part in ("seen", "unseen")]
    return ("Answerable rag questions by whether their gold evidence was among the training sources (a gain only "
            "on seen evidence is memorised, not learnt), base -> adapted: " + "; ".join(parts) + ".")


def _agreement_text(figs: Figures) -> str:
    """Where both layers ran (`eval crosscheck`): how often the judge model agrees with the checks."""
    if not figs.get("crosscheck.n"):
        return "the two layers were not both run on any answer, so their agreement is not measured here."
    differed = _v(figs, "crosscheck.disagree") if figs.get("crosscheck.disagree") else "none"
    return (f"asked about {_v(figs, 'crosscheck.n')} answers the checks had settled (refusals aside), it agreed "
            f"on {_pct(figs, 'crosscheck.agreement')}; it differed on {differed}. A judge that differs often where "
            "the checks are sure deserves less trust on the answers only it settled.")


def _scale_text(out: dict[str, Any]) -> str:
    """Which strength of the adapter the golden set was asked at, and why."""
    chosen = out.get("adapted") or {}
    if not chosen.get("probe_right"):
        return ""
    tried = ", ".join(f"x{float(s):g}: {v:.0%}" for s, v in chosen["probe_right"].items())
    return (f" The adapter was asked the probe at each strength in ladder.adapter_scales (adapted@S: at S times "
            f"its trained strength; probe questions right {tried}); the golden set was asked at the one with the "
            f"most right, x{chosen['scale']:g}. The probe chooses it, so its figure at that strength is a little "
            "optimistic; the golden-set figures are not selected on.")


def _probe_splits(probe: dict[str, Any]) -> str:
    """Where the probe's questions came from, when the validation documents were asked too."""
    by = probe.get("by_split") or {}
    if not by.get("validation"):
        return ""
    return (f" Questions: {by.get('probe', 0)} from the probe documents, {by['validation']} from the validation "
            "documents (neither is trained on).")
