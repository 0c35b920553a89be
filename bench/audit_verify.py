"""`audit verify` time, checkpoint size and write cost at 10k, 100k and 1M rows, on this machine.

Stores are written through the product's own Run.append/flush: runs of eval-like units (an answers row with a
~600-character prompt, a judgement-sized event and a progress event). Baselines measured in the same run: reading
every chained row into Python (what any verifier must do) and recomputing the per-run chains alone (the store before
the ledger); the ledger's share is the difference. Flushing: `--unit-flush-max` rows and below are written one
unit per transaction as `eval answers` does (one ledger entry per question); larger stores flush every 500 rows
(FLUSH_EVERY) so that they can be built in minutes - their ledgers have fewer entries, so their checkpoints are
smaller than an eval-written store of that size would have (the per-unit figure at 10k shows the ratio).

    .venv/bin/python bench/audit_verify.py [--sizes 10000,100000,1000000] [--unit-flush-max 10000]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import appliance  # noqa: F401  (offline settings)
from appliance.audit import AuditStore, _load, checkpoint
from appliance.audit.chain import verify_rows

PROMPT = ("You answer questions from the passages below. " * 14)[:600]


def build(path: Path, n_rows: int, per_unit: bool) -> float:
    t0 = time.perf_counter()
    rows = 0
    with AuditStore(path) as store:
        while rows < n_rows:
            with store.run("bench", "bench/audit_verify.py", {"n": n_rows}, "0") as run:
                for q in range(min(333, (n_rows - rows) // 3)):
                    run.append("answers", question_id=f"q{q}", question="What is the retention period?",
                               condition="rag", strategy="single", model_name="m", model_sha256="0" * 64,
                               adapter_id=None, adapter_sha256=None, template_id="context/v1", prompt=PROMPT,
                               prompt_sha256="1" * 64, retrieved_json=[{"chunk_id": "c" * 32, "rank": 1}],
                               params_json={"temperature": 0.0}, seed=0, output="90 days", finish_reason="stop",
                               prompt_tokens=650, completion_tokens=4, latency_ms=6400.0)
                    run.event("judged", verdict="correct", method="deterministic", reason="matches the key " * 4)
                    run.event("question_done", i=q, seconds=6.5)
                    if per_unit:
                        run.flush()
            rows = store.head().size
            if n_rows - rows < 5:
                break
    return time.perf_counter() - t0


def measure(path: Path) -> dict:
    with AuditStore(path) as store:
        t0 = time.perf_counter()
        rows_by_run, order = _load(store.con)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        verify_rows(rows_by_run, order, set())
        t_chains = time.perf_counter() - t0
        del rows_by_run
        t0 = time.perf_counter()
        report = store.verify()
        t_full = time.perf_counter() - t0
        assert report.ok, [str(f) for f in report.findings[:3]]
        cp = checkpoint.make(path, report)
        t0 = time.perf_counter()
        store.verify(checkpoints=(cp,))
        t_with_cp = time.perf_counter() - t0
        entries = store.head().entries
    return {"rows": report.rows, "entries": entries, "read_s": t_read, "chains_s": t_chains, "verify_s": t_full,
            "verify_cp_s": t_with_cp, "checkpoint_bytes": len(json.dumps(cp)),
            "file_mb": path.stat().st_size / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--unit-flush-max", type=int, default=10000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    print(f"{'rows':>9} {'flush':>8} {'entries':>8} {'build s':>8} {'MB':>7} {'read s':>7} {'chains s':>8} "
          f"{'verify s':>8} {'x read':>6} {'+ckpt s':>7} {'ckpt KB':>7}")
    try:
        for n in [int(s) for s in args.sizes.split(",")]:
            for per_unit in ([True, False] if n <= args.unit_flush_max else [False]):
                path = tmp / f"a{n}{per_unit}.duckdb"
                built = build(path, n, per_unit)
                m = measure(path)
                print(f"{m['rows']:>9} {'unit' if per_unit else '500':>8} {m['entries']:>8} {built:>8.1f} "
                      f"{m['file_mb']:>7.1f} {m['read_s']:>7.2f} {m['chains_s']:>8.2f} {m['verify_s']:>8.2f} "
                      f"{m['verify_s'] / m['read_s']:>6.2f} {m['verify_cp_s']:>7.2f} "
                      f"{m['checkpoint_bytes'] / 1024:>7.1f}", flush=True)
                path.unlink()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"peak RSS {peak:.2f} GiB (verify holds every row in memory)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
