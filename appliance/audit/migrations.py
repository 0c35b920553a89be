"""Schema migrations of the audit store, applied in order and recorded in `schema_migrations`.

Append new migrations at the end; never edit an applied one (its sha256 is recorded and checked on open).

Every chained table has the columns `run_id, seq, created_at, prev_hash, row_hash`: `seq` numbers the rows of a run
across all chained tables, and `row_hash` is the sha256 of the row's other columns including `prev_hash`, the
previous row's `row_hash` in the same run (see appliance/audit/chain.py). `audit verify` finds the chained tables by
those columns, so a new table joins the chain just by having them.
"""
from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "runs, answers, events and auditor views",
        """
CREATE TABLE runs (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    command VARCHAR NOT NULL,
    os_user VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    appliance_version VARCHAR NOT NULL,
    config_json JSON NOT NULL,
    config_sha256 VARCHAR NOT NULL,
    prev_run_hash VARCHAR,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE answers (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    question_id VARCHAR,
    question VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    model_sha256 VARCHAR NOT NULL,
    adapter_id VARCHAR,
    adapter_sha256 VARCHAR,
    template_id VARCHAR NOT NULL,
    prompt VARCHAR NOT NULL,
    prompt_sha256 VARCHAR NOT NULL,
    retrieved_json JSON NOT NULL,
    params_json JSON NOT NULL,
    seed BIGINT,
    output VARCHAR NOT NULL,
    finish_reason VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_ms DOUBLE NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE events (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    payload_json JSON NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_runs AS
SELECT r.run_id, r.kind, r.created_at AS started_at, r.os_user, r.host, r.command, r.appliance_version,
       r.config_sha256,
       (SELECT count(*) FROM answers a WHERE a.run_id = r.run_id) AS n_answers,
       (SELECT string_agg(DISTINCT a.model_name || '@' || left(a.model_sha256, 12), ', ')
          FROM answers a WHERE a.run_id = r.run_id) AS models,
       e.created_at AS ended_at,
       json_extract_string(e.payload_json, '$.status') AS status
FROM runs r
LEFT JOIN events e ON e.run_id = r.run_id AND e.kind = 'run_end';
CREATE VIEW v_answers AS
SELECT a.run_id, r.os_user, r.host, a.created_at, a.question_id, a.question, a.condition, a.strategy,
       a.model_name, a.model_sha256, a.adapter_id, a.adapter_sha256, a.template_id, a.prompt_sha256,
       a.params_json, a.seed, a.output, a.prompt_tokens, a.completion_tokens, a.latency_ms
FROM answers a JOIN runs r USING (run_id);
CREATE VIEW v_question_history AS
SELECT coalesce(a.question_id, a.question) AS question_key, a.created_at, a.run_id, a.condition, a.strategy,
       a.model_name, left(a.model_sha256, 12) AS model_sha256_12, a.adapter_id, a.output
FROM answers a
ORDER BY question_key, a.created_at;
""",
    ),
    (
        2,
        "retrievals and the retrieval-evaluation view",
        """
CREATE TABLE retrievals (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    question_id VARCHAR,
    query VARCHAR NOT NULL,
    mode VARCHAR NOT NULL,
    k BIGINT NOT NULL,
    groups_json JSON NOT NULL,
    rerank VARCHAR NOT NULL,
    hits_json JSON NOT NULL,
    evidence_found BOOLEAN,
    evidence_rank BIGINT,
    latency_ms DOUBLE NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_retrievals AS
SELECT r.run_id, h.os_user, r.created_at, r.question_id, r.query, r.mode, r.k, r.rerank, r.groups_json,
       r.evidence_found, r.evidence_rank, r.latency_ms, r.hits_json
FROM retrievals r JOIN runs h USING (run_id);
CREATE VIEW v_ingest_files AS
SELECT e.run_id, e.created_at, e.kind AS outcome, json_extract_string(e.payload_json, '$.path') AS path,
       json_extract_string(e.payload_json, '$.sha256') AS sha256,
       CAST(json_extract(e.payload_json, '$.chunks') AS BIGINT) AS chunks,
       json_extract_string(e.payload_json, '$.reason') AS reason
FROM events e
WHERE e.kind IN ('file_ingested', 'file_unchanged', 'file_skipped', 'file_removed');
""",
    ),
]
