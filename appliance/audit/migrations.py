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
    (
        3,
        "judgements with failure kinds, comparisons, gold-set findings, reports and their views",
        """
CREATE TABLE judgements (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    answer_row_hash VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    refused BOOLEAN NOT NULL,
    judge_model VARCHAR,
    judge_model_sha256 VARCHAR,
    judge_template_id VARCHAR,
    raw_outputs_json JSON NOT NULL,
    agreement DOUBLE,
    evidence_in_context BOOLEAN,
    failure_kind VARCHAR NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE comparisons (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    run_a VARCHAR NOT NULL,
    run_b VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    n_pairs BIGINT NOT NULL,
    accuracy_a DOUBLE NOT NULL,
    accuracy_b DOUBLE NOT NULL,
    a_only BIGINT NOT NULL,
    b_only BIGINT NOT NULL,
    p_value DOUBLE NOT NULL,
    ci_low DOUBLE NOT NULL,
    ci_high DOUBLE NOT NULL,
    verdict VARCHAR NOT NULL,
    flips_json JSON NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE gold_findings (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    question_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    checks_json JSON NOT NULL,
    reason VARCHAR NOT NULL,
    passage VARCHAR NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_judged_answers AS
SELECT j.run_id, a.created_at, j.question_id, j.kind, j.condition, j.strategy, a.model_name,
       left(a.model_sha256, 12) AS model_sha256_12, a.adapter_id, a.template_id, a.prompt_sha256, a.question,
       a.output, j.verdict, j.method, j.failure_kind, j.evidence_in_context, j.judge_model, j.judge_template_id,
       j.agreement, j.reason, a.retrieved_json, a.prompt_tokens, a.completion_tokens, a.latency_ms
FROM judgements j JOIN answers a ON a.row_hash = j.answer_row_hash;
CREATE VIEW v_accuracy AS
SELECT run_id, condition, strategy, count(*) AS n,
       count(*) FILTER (WHERE verdict = 'correct') AS correct,
       round(count(*) FILTER (WHERE verdict = 'correct') / count(*), 4) AS accuracy,
       count(*) FILTER (WHERE verdict = 'unparseable') AS unparseable
FROM judgements GROUP BY run_id, condition, strategy;
CREATE VIEW v_failures AS
SELECT run_id, condition, strategy, failure_kind, count(*) AS n, string_agg(question_id, ' ' ORDER BY question_id) AS questions
FROM judgements GROUP BY run_id, condition, strategy, failure_kind;
CREATE VIEW v_comparisons AS
SELECT run_id, created_at, run_a, run_b, condition, n_pairs, accuracy_a, accuracy_b, a_only, b_only, p_value,
       ci_low, ci_high, verdict
FROM comparisons;
CREATE VIEW v_regressions AS
SELECT c.run_id, c.run_a, c.run_b, c.condition, json_extract_string(f.value, '$.question_id') AS question_id,
       json_extract_string(f.value, '$.a') AS verdict_a, json_extract_string(f.value, '$.b') AS verdict_b
FROM comparisons c, json_each(c.flips_json) f
WHERE json_extract_string(f.value, '$.a') = 'correct';
CREATE VIEW v_gold_findings AS
SELECT g.run_id, g.created_at, g.question_id, g.status, g.reason, g.passage, g.checks_json
FROM gold_findings g;
CREATE VIEW v_reports AS
SELECT e.run_id, e.created_at, json_extract_string(e.payload_json, '$.path') AS path,
       json_extract_string(e.payload_json, '$.sha256') AS sha256, json_extract_string(e.payload_json, '$.of') AS report_of
FROM events e WHERE e.kind = 'report_written';
""",
    ),
    (
        4,
        "synthetic data: candidate pairs, their filter outcomes, reviews, datasets, and their views",
        """
CREATE TABLE sdg_pairs (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    pair_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    question VARCHAR NOT NULL,
    answer VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL,
    hint VARCHAR NOT NULL,
    excerpt VARCHAR NOT NULL,
    chunk_id VARCHAR NOT NULL,
    doc_id VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    section VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    generator_model VARCHAR NOT NULL,
    generator_sha256 VARCHAR NOT NULL,
    template_id VARCHAR NOT NULL,
    prompt_sha256 VARCHAR NOT NULL,
    raw_output VARCHAR NOT NULL,
    attempts BIGINT NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE sdg_filters (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    pair_id VARCHAR NOT NULL,
    filter VARCHAR NOT NULL,
    passed BOOLEAN NOT NULL,
    score DOUBLE,
    threshold DOUBLE,
    detail VARCHAR NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE sdg_reviews (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    pair_id VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    question VARCHAR,
    answer VARCHAR,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE TABLE datasets (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    dataset_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    n_train BIGINT NOT NULL,
    n_validation BIGINT NOT NULL,
    reviewed_only BOOLEAN NOT NULL,
    card_json JSON NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_sdg_pairs AS
SELECT p.run_id, p.created_at, p.pair_id, p.kind, p.split, p.question, p.answer, p.evidence, p.file_name, p.section,
       p.chunk_id, p.generator_model, p.attempts,
       (SELECT bool_and(f.passed) FROM sdg_filters f WHERE f.pair_id = p.pair_id AND f.run_id = p.run_id) AS passed,
       (SELECT string_agg(f.filter, ', ' ORDER BY f.seq) FROM sdg_filters f
         WHERE f.pair_id = p.pair_id AND f.run_id = p.run_id AND NOT f.passed) AS failed_filters,
       (SELECT r.action FROM sdg_reviews r WHERE r.pair_id = p.pair_id ORDER BY r.created_at DESC, r.seq DESC LIMIT 1)
           AS review,
       (SELECT r.reviewer FROM sdg_reviews r WHERE r.pair_id = p.pair_id ORDER BY r.created_at DESC, r.seq DESC LIMIT 1)
           AS reviewer
FROM sdg_pairs p;
CREATE VIEW v_sdg_survival AS
SELECT run_id, filter, count(*) AS checked, count(*) FILTER (WHERE passed) AS passed,
       round(count(*) FILTER (WHERE passed) / count(*), 4) AS pass_rate
FROM sdg_filters GROUP BY run_id, filter;
CREATE VIEW v_sdg_reviews AS
SELECT r.run_id, r.created_at, r.pair_id, r.action, r.reviewer, r.reason, r.question, r.answer FROM sdg_reviews r;
CREATE VIEW v_datasets AS
SELECT d.run_id, d.created_at, d.dataset_id, d.path, d.n_train, d.n_validation, d.reviewed_only, d.card_json
FROM datasets d;
""",
    ),
    (
        5,
        "the ledger: one chain over every write, so the head commits to every row",
        """
CREATE TABLE ledger (
    position BIGINT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    run_id VARCHAR,
    seq_from BIGINT,
    seq_to BIGINT,
    row_hashes JSON NOT NULL,
    size BIGINT NOT NULL,
    note VARCHAR,
    prev_entry_hash VARCHAR,
    entry_hash VARCHAR NOT NULL
);
CREATE VIEW v_ledger AS
SELECT position, created_at, kind, run_id, seq_from, seq_to, size, note, entry_hash FROM ledger;
""",
    ),
    (
        6,
        "training: the loss curve of every adaptation run, and the models a workspace registered",
        """
CREATE TABLE train_steps (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    step BIGINT NOT NULL,
    epoch DOUBLE NOT NULL,
    split VARCHAR NOT NULL,
    loss DOUBLE NOT NULL,
    learning_rate DOUBLE,
    tokens BIGINT,
    token_accuracy DOUBLE,
    seconds DOUBLE NOT NULL,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_train_curves AS
SELECT t.run_id, t.step, t.epoch, t.split, t.loss, t.learning_rate, t.tokens, t.token_accuracy, t.seconds, t.created_at
FROM train_steps t;
CREATE VIEW v_models_made AS
SELECT e.run_id, e.created_at, json_extract_string(e.payload_json, '$.name') AS name,
       json_extract_string(e.payload_json, '$.role') AS role, json_extract_string(e.payload_json, '$.sha256') AS sha256,
       json_extract_string(e.payload_json, '$.lineage.base_sha256') AS base_sha256,
       json_extract_string(e.payload_json, '$.lineage.dataset_id') AS dataset_id, e.payload_json AS lineage_json
FROM events e WHERE e.kind = 'model_registered';
""",
    ),
    (
        7,
        "the server: one row per request (caller key, weights, prompt hash, tokens, latency, outcome)",
        """
CREATE TABLE requests (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    request_id VARCHAR NOT NULL,
    key_id VARCHAR NOT NULL,
    endpoint VARCHAR NOT NULL,
    requested_model VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    model_sha256 VARCHAR NOT NULL,
    adapter_id VARCHAR,
    adapter_sha256 VARCHAR,
    groups_json JSON NOT NULL,
    prompt_sha256 VARCHAR,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    latency_ms DOUBLE NOT NULL,
    queued_ms DOUBLE NOT NULL,
    stream BOOLEAN NOT NULL,
    status BIGINT NOT NULL,
    error VARCHAR,
    answer_row_hash VARCHAR,
    prev_hash VARCHAR,
    row_hash VARCHAR NOT NULL
);
CREATE VIEW v_requests AS
SELECT r.run_id, r.created_at, r.request_id, r.key_id, r.endpoint, r.requested_model, r.model_name,
       left(r.model_sha256, 12) AS model_sha256_12, r.adapter_id, r.prompt_sha256, r.prompt_tokens,
       r.completion_tokens, r.latency_ms, r.queued_ms, r.stream, r.status, r.error
FROM requests r;
""",
    ),
    (
        8,
        "the ladder: its rungs (key, outputs, seconds, reused) and its decision records",
        """
CREATE VIEW v_ladder_rungs AS
SELECT e.run_id, e.created_at, json_extract_string(e.payload_json, '$.rung') AS rung,
       json_extract_string(e.payload_json, '$.label') AS label, json_extract_string(e.payload_json, '$.key') AS key,
       CAST(json_extract(e.payload_json, '$.seconds') AS DOUBLE) AS seconds,
       CAST(json_extract(e.payload_json, '$.reused') AS BOOLEAN) AS reused,
       json_extract(e.payload_json, '$.outputs') AS outputs_json
FROM events e WHERE e.kind = 'ladder_rung_done';
CREATE VIEW v_decisions AS
SELECT e.run_id, e.created_at, json_extract_string(e.payload_json, '$.verdict') AS verdict,
       json_extract_string(e.payload_json, '$.locus') AS locus, json_extract_string(e.payload_json, '$.rule') AS rule,
       json_extract_string(e.payload_json, '$.because') AS because, json_extract(e.payload_json, '$.paths') AS paths_json,
       json_extract(e.payload_json, '$.sha256') AS sha256_json, json_extract(e.payload_json, '$.figures') AS figures_json
FROM events e WHERE e.kind = 'decision_record';
""",
    ),
    (
        9,
        "v_decisions names the ladder run whose rungs a record rests on (a `decide` run renders another's again)",
        """
CREATE OR REPLACE VIEW v_decisions AS
SELECT e.run_id,
       coalesce(json_extract_string(e.payload_json, '$.ladder_run'),
                (SELECT json_extract_string(s.payload_json, '$.ladder_run') FROM events s
                 WHERE s.run_id = e.run_id AND s.kind = 'decide_start' LIMIT 1), e.run_id) AS ladder_run,
       e.created_at, json_extract_string(e.payload_json, '$.verdict') AS verdict,
       json_extract_string(e.payload_json, '$.locus') AS locus, json_extract_string(e.payload_json, '$.rule') AS rule,
       json_extract_string(e.payload_json, '$.because') AS because, json_extract(e.payload_json, '$.paths') AS paths_json,
       json_extract(e.payload_json, '$.sha256') AS sha256_json, json_extract(e.payload_json, '$.figures') AS figures_json
FROM events e WHERE e.kind = 'decision_record';
""",
    ),
]
