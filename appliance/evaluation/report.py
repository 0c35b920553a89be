"""Reports of an evaluation run and of a comparison: Markdown, and a self-contained HTML page (inline SVG plots,
no scripts, no external files), written to the workspace's reports/ and recorded with their sha256."""
from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any

from appliance.audit import AuditStore
from appliance.evaluation.attribution import FAILURE_KINDS

_COLOURS = {"correct": "#2e7d32", "retrieval_miss": "#ef6c00", "context_misuse": "#f9a825", "model_limit": "#c62828",
            "wrong_refusal": "#6a1b9a", "hallucinated_answer": "#ad1457", "unattributed": "#90a4ae",
            "unjudged": "#757575"}


def bars(title: str, items: list[tuple[str, float]], maximum: float = 1.0, fmt: str = "{:.0%}") -> str:
    """A horizontal bar chart as inline SVG."""
    height = 24 * len(items) + 30
    rows = [f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = 30 + 24 * i
        width = 0 if maximum == 0 else 300 * value / maximum
        rows.append(f'<text x="0" y="{y + 14}">{html.escape(label)}</text>'
                    f'<rect x="200" y="{y}" width="{width:.1f}" height="18" fill="#1565c0"/>'
                    f'<text x="{205 + width:.1f}" y="{y + 14}">{fmt.format(value)}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="620" height="{height}" font-size="13">{"".join(rows)}</svg>'


def stacked(title: str, rows: list[tuple[str, dict[str, int]]]) -> str:
    """Failure breakdown per condition as stacked bars (one colour per failure kind) with a legend."""
    height = 24 * len(rows) + 60
    out = [f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, counts) in enumerate(rows):
        y, x, total = 30 + 24 * i, 200.0, sum(counts.values()) or 1
        out.append(f'<text x="0" y="{y + 14}">{html.escape(label)}</text>')
        for kind in FAILURE_KINDS:
            w = 380 * counts.get(kind, 0) / total
            if w:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{_COLOURS[kind]}">'
                           f'<title>{kind}: {counts[kind]}</title></rect>')
                x += w
    y = 40 + 24 * len(rows)
    for j, kind in enumerate(FAILURE_KINDS):
        out.append(f'<rect x="{j * 100}" y="{y}" width="10" height="10" fill="{_COLOURS[kind]}"/>'
                   f'<text x="{j * 100 + 14}" y="{y + 10}" font-size="10">{kind}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="720" height="{height}" font-size="13">{"".join(out)}</svg>'


def html_page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}"
            ".ok{color:#2e7d32}.bad{color:#c62828}</style></head><body>" + body + "</body></html>")


def table_html(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + cells + "</table>"


def table_md(head: list[str], rows: list[list[Any]]) -> str:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def record_reports(run: Any, written: list[tuple[Path, str]], result: dict[str, Any]) -> None:
    """Put each written report (path, sha256) on the record as a `report_written` event of `run`, and list its path
    under result["reports"]."""
    for path, digest in written:
        run.event("report_written", path=str(path), sha256=digest, of=run.run_id)
        result.setdefault("reports", []).append(str(path))


def write_pair(ws, name: str, md: str, page: str) -> list[tuple[Path, str]]:
    """Write NAME.md and NAME.html, each ending with the audit store's head and checkpoint at this moment."""
    with AuditStore(ws.audit_path) as store:
        provenance = store.provenance()
    md += f"\n{provenance}\n"
    page = page.replace("</body>", f"<p><small>{html.escape(provenance)}</small></p></body>")
    ws.reports_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix, text in ((".md", md), (".html", page)):
        path = ws.reports_dir / f"{name}{suffix}"
        path.write_text(text, encoding="utf-8")
        out.append((path, hashlib.sha256(text.encode()).hexdigest()))
    return out


def run_report(ws, summary: dict[str, Any]) -> list[tuple[Path, str]]:
    """Report of one `eval answers` run: accuracy by condition and kind, failures, every question."""
    conds = summary["conditions"]
    title = f"Evaluation run {summary['run_id']}"
    head = ["condition", "n", "accuracy", "answerable acc.", "unanswerable refused", "prompt tokens (mean)",
            "s/question", "unparseable"]
    rows = [[c, s["n"], f"{s['accuracy']:.1%}", f"{s['answerable_accuracy']:.1%}"
             if s["answerable_accuracy"] is not None else "-", s["unanswerable_refused"], s["prompt_tokens_mean"],
             s["seconds_per_question"], s["unparseable"]] for c, s in conds.items()]
    kinds = sorted({k for s in conds.values() for k in s["by_kind"]})
    kind_rows = [[k] + [f"{conds[c]['by_kind'][k]['accuracy']:.0%} (n={conds[c]['by_kind'][k]['n']})"
                        if k in conds[c]["by_kind"] else "-" for c in conds] for k in kinds]
    fail_rows = [[c] + [s["failures"].get(k, 0) for k in FAILURE_KINDS[1:]] for c, s in conds.items()]
    by_q: dict[str, dict[str, Any]] = {}
    for q in summary["questions"]:
        by_q.setdefault(q["id"], {"kind": q["kind"]})[q["condition"]] = q
    q_rows = [[qid, v["kind"]] + [("ok" if v[c]["verdict"] == "correct" else v[c]["failure_kind"]) if c in v else "-"
                                  for c in conds] for qid, v in by_q.items()]
    meta = ("SYNTHETIC QUESTIONS (an abstention probe made from the documents by `appliance sdg probe`, not a "
            "golden set written by people). " if summary.get("synthetic") else "")
    meta += (f"model {summary['model']} (sha256 {summary['model_sha256'][:12]}…), strategy {summary['strategy']}, "
            f"judge {summary['judge_model']}, questions {summary['questions_file']} ({summary['n_questions']}), "
            f"{summary['seconds']} s")
    if summary.get("rejudged"):
        meta += (f". A re-judgement of run {summary['rejudged']}: its answers (tokens and times are theirs) judged "
                 f"again here")
    md = "\n\n".join([f"# {title}", meta, "## Accuracy by condition", table_md(head, rows),
                      "## Accuracy by question kind", table_md(["kind", *conds], kind_rows),
                      "## Failures", table_md(["condition", *FAILURE_KINDS[1:]], fail_rows),
                      "## Per question", table_md(["id", "kind", *conds], q_rows)]) + "\n"
    body = "".join([
        f"<h1>{html.escape(title)}</h1><p>{html.escape(meta)}</p>",
        bars("Accuracy by condition", [(c, s["accuracy"] or 0.0) for c, s in conds.items()]),
        table_html(head, rows), "<h2>Accuracy by question kind</h2>",
        "".join(bars(c, [(k, conds[c]["by_kind"][k]["accuracy"] or 0.0) for k in kinds if k in conds[c]["by_kind"]])
                for c in conds),
        "<h2>Failures</h2>",
        stacked("Outcome by condition", [(c, {"correct": s["correct"], **s["failures"]}) for c, s in conds.items()]),
        table_html(["condition", *FAILURE_KINDS[1:]], fail_rows),
        "<h2>Per question</h2>", table_html(["id", "kind", *conds], q_rows)])
    return write_pair(ws, f"eval-{summary['run_id']}", md, html_page(title, body))


def comparison_report(ws, result: dict[str, Any]) -> list[tuple[Path, str]]:
    """Report of a comparison: accuracy of both runs, the paired test and every flip, per condition."""
    title = f"Comparison {result['run_a']} (A) vs {result['run_b']} (B)"
    head = ["condition", "n", "accuracy A", "accuracy B", "A only (regressions)", "B only", "McNemar p",
            f"{1 - result['alpha']:.0%} CI of B-A", "verdict"]
    rows = [[c, t["n"], f"{t['accuracy_a']:.1%}", f"{t['accuracy_b']:.1%}", t["a_only"], t["b_only"], t["p_value"],
             f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]", t["verdict"]] for c, t in result["conditions"].items()]
    flip_rows = [[c, f["question_id"], f["kind"], f"{f['a']} ({f['a_failure']})", f"{f['b']} ({f['b_failure']})"]
                 for c, t in result["conditions"].items() for f in t["flips"]]
    meta = (f"A: strategy {', '.join(result['strategy_a'])}, model {', '.join(result['model_a'])}"
            f"{' + ' + ', '.join(result.get('adapter_a', [])) if result.get('adapter_a') else ''}; "
            f"B: strategy {', '.join(result['strategy_b'])}, model {', '.join(result['model_b'])}"
            f"{' + ' + ', '.join(result.get('adapter_b', [])) if result.get('adapter_b') else ''}. "
            f"A difference is claimed only when McNemar's exact p < {result['alpha']} and the bootstrap interval "
            f"excludes 0; otherwise the verdict is 'insufficient evidence'.")
    split_rows = [[c, part, x["n"], x["accuracy_a"], x["accuracy_b"]] for c, t in result["conditions"].items()
                  if t.get("evidence_split") for part, x in t["evidence_split"].items()]
    split_head = ["condition", "gold evidence in training", "n", "accuracy A", "accuracy B"]
    md = "\n\n".join([f"# {title}", meta, table_md(head, rows), "## Flips",
                      table_md(["condition", "id", "kind", "A", "B"], flip_rows) if flip_rows else "none"]
                     + (["## Seen and unseen evidence", table_md(split_head, split_rows)] if split_rows else [])) + "\n"
    plots = []
    for c, t in result["conditions"].items():
        plots.append(bars(f"{c}: accuracy", [("A " + result["run_a"][:8], t["accuracy_a"]),
                                             ("B " + result["run_b"][:8], t["accuracy_b"])]))
        plots.append(bars(f"{c}: flips", [("right in A only", t["a_only"]), ("right in B only", t["b_only"])],
                          maximum=max(1, t["a_only"], t["b_only"]), fmt="{:.0f}"))
    body = (f"<h1>{html.escape(title)}</h1><p>{html.escape(meta)}</p>" + "".join(plots) + table_html(head, rows)
            + "<h2>Flips</h2>" + (table_html(["condition", "id", "kind", "A", "B"], flip_rows) if flip_rows
                                  else "<p>none</p>")
            + (f"<h2>Seen and unseen evidence</h2>{table_html(split_head, split_rows)}" if split_rows else ""))
    return write_pair(ws, f"compare-{result['run_a'][:8]}-{result['run_b'][:8]}", md, html_page(title, body))
