"""The seeds' lab reproduced on its own material: the ladder on ../shared/lab (its rules text, its 10 questions with
corrected keys), beside the lab's reference figures (../shared/lab/REFERENCE.md: 6/10 RAG, 8/10 best-of-5, 5/10
fine-tuned, 8/10 fine-tuned + RAG, keyword-graded on a key with 4 wrong answers). Also the gold check on the lab's
own key (`lab_expected`): how many of its wrong answers the appliance catches. Prints the side-by-side; writes
nothing into the repository. Skips cleanly when ../shared/lab is absent.

    .venv/bin/python bench/lab_side_by_side.py [--workspace /tmp/lab-ws] [--until decide] [--quick]

Our figures are the appliance's judge on corrected keys (stricter than the lab's keyword grader), with the bundled
0.5B model on 2 CPU cores, where the lab used Granite 8B on a GPU: the comparison is of the method's arc, not the
models.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from appliance.cli import main
from appliance.models import REPO_ROOT

LAB = REPO_ROOT.parent / "shared" / "lab"
REFERENCE = {"rag": "6/10", "best-of-n": "8/10", "fine-tuned, no rag": "5/10", "fine-tuned + rag": "8/10",
             "wrong keys in the lab's answer key": "4 (found by hand)"}


def counts(ws: Path, run_id: str, condition: str) -> tuple[int, int]:
    import duckdb

    con = duckdb.connect(str(ws / "audit.duckdb"), read_only=True)
    k, n = con.execute("SELECT count(*) FILTER (WHERE verdict = 'correct'), count(*) FROM judgements "
                       "WHERE run_id = ? AND condition = ?", [run_id, condition]).fetchone()
    con.close()
    return k, n


def right(ws: Path, run_id: str, condition: str) -> str:
    return "{}/{}".format(*counts(ws, run_id, condition))


def best_of_n(ws: Path, base: dict | None, scaling: dict | None) -> str:
    """The lab asked best-of-5 every question; the ladder asks it only where single failed, so its total is
    single's right answers plus best-of-n's on the rest."""
    if not base or not scaling:
        return "not run"
    k, n = counts(ws, base["run_id"], "rag")
    if not scaling.get("run_id"):
        return f"{k}/{n} (single failed none)"
    kb, nb = counts(ws, scaling["run_id"], "rag")
    return f"{k + kb}/{n} (single {k}, best-of-n {kb} of the {nb} single failed)"


def run(args: list[str]) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    if code not in (0, 1):
        sys.exit(f"{' '.join(args)} exited {code}")
    return json.loads(buf.getvalue())


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="/tmp/lab-ws")
    ap.add_argument("--until", default="decide")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if not LAB.is_dir():
        print(f"skipped: {LAB} is absent")
        return
    ws = Path(a.workspace)
    t0 = time.perf_counter()
    lad = run(["--workspace", str(ws), "ladder", "--docs", str(LAB / "corpus"), "--questions",
               str(LAB / "questions.jsonl"), "--until", a.until, "--json"] + (["--quick"] if a.quick else []))
    seconds = time.perf_counter() - t0
    gold = run(["--workspace", str(ws), "gold", "check", "--questions", str(LAB / "questions.jsonl"),
                "--answer-field", "lab_expected", "--json"])
    rungs = lad["rungs"]
    base = rungs.get("answers:" + next((k.split(":", 1)[1] for k in rungs if k.startswith("answers:")), ""))
    ours = {"rag": right(ws, base["run_id"], "rag") if base else "not run",
            "best-of-n": best_of_n(ws, base, rungs.get("scaling:best-of-n")),
            "fine-tuned, no rag": right(ws, rungs["adapted"]["run_id"], "closed-book") if "adapted" in rungs
            else "not run",
            "fine-tuned + rag": right(ws, rungs["adapted"]["run_id"], "rag") if "adapted" in rungs else "not run",
            "wrong keys in the lab's answer key": f"{gold['flagged']} flagged by `gold check --answer-field "
            f"lab_expected`: {', '.join(f['question_id'] for f in gold['findings'] if f['status'] != 'ok')}"}
    print(f"ladder run {lad['run_id']} on {LAB} ({seconds:.0f} s)")
    print(f"{'figure':<36} {'lab (REFERENCE.md)':<22} appliance")
    for k, ref in REFERENCE.items():
        print(f"{k:<36} {ref:<22} {ours[k]}")
    if base:
        print(f"closed-book {right(ws, base['run_id'], 'closed-book')}, oracle {right(ws, base['run_id'], 'oracle')} "
              "(the lab measured neither)")
    if lad.get("record"):
        print(f"verdict: {lad['record']['verdict']} ({lad['record']['rule']}): {lad['record']['because']}")


if __name__ == "__main__":
    main_()
