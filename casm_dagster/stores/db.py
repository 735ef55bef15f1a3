"""Engines for CASM's own tables, beside Dagster's in the instance database."""

from __future__ import annotations

import threading

import sqlalchemy as sa

metadata = sa.MetaData()

repos_table = sa.Table(
    "casm_repos",
    metadata,
    sa.Column("partition_key", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "local" | "github"
    sa.Column("location", sa.Text, nullable=False),  # absolute path, or owner/name
    sa.Column("added_at", sa.String(40), nullable=False),
)


# HITL approval requests: one row per gated run. ``id`` orders them; ``status`` moves
# pending → approved | denied | expired exactly once (guarded UPDATEs, see stores/approvals.py).
approvals_table = sa.Table(
    "casm_hitl_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), nullable=False, unique=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("repo", sa.Text, nullable=False),
    sa.Column("partition_key", sa.String(255), nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("state_dir", sa.Text, nullable=False),  # where runs/<run_id>/ lives
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("approvers", sa.Text, nullable=False),  # JSON list, the allowlist when requested
    sa.Column("plan_sha256", sa.String(64), nullable=False),
    sa.Column("ruleset_id", sa.String(64), nullable=False),
    sa.Column("ruleset_sha256", sa.String(64), nullable=False),
    sa.Column("packet", sa.Text, nullable=False),  # JSON: status, score, reason codes, scope (hashed evidence only)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16)),  # "packet" | "full", chosen by the approver
    sa.Column("approver", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=False),
    sa.Column("decided_at", sa.String(40)),
    sa.Column("consumed_at", sa.String(40)),
    sa.Column("continuation_run_id", sa.String(64)),
    sa.Column("outcome", sa.Text),  # how the story ended after approval (applied, void: why)
    # HMAC over (request, plan hash, decision, approver, reason, scope) with the installation's
    # key: a row written by anything without the key (a forged approval) does not verify.
    sa.Column("mac", sa.String(64)),
)

# Every HITL action, refusals included, in order. The sensor's cursor is this table's id.
hitl_log_table = sa.Table(
    "casm_hitl_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), nullable=False, index=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


# Columns added to existing tables since they were first created: (table, column, DDL type).
ADDED_COLUMNS = (("casm_hitl_requests", "mac", "VARCHAR(64)"), ("casm_sentinels", "host_queue", "TEXT"))


def _add_missing_columns(engine: sa.Engine) -> None:
    """``create_all`` creates missing tables, never missing columns: add them to a database
    an earlier version made (nullable, so old rows stay valid)."""
    inspector = sa.inspect(engine)
    for table, column, ddl in ADDED_COLUMNS:
        if inspector.has_table(table) and column not in {c["name"] for c in inspector.get_columns(table)}:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def engine_for(url: str) -> sa.Engine:
    """One engine per database URL per process, its tables created once (not on every call:
    an audit asks for the engine in most of its stages)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            metadata.create_all(engine)
            _add_missing_columns(engine)
            _engines[url] = engine
        return engine


# One row per model request (SPEC §8 call log), written before the answer is used.
# Costs are exact decimal strings (USD), so sums reconcile to the cent on any backend.
model_calls_table = sa.Table(
    "casm_model_calls",
    metadata,
    sa.Column("call_id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("task_type", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("repo", sa.Text, nullable=False),
    sa.Column("template_id", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("profile", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cache_read_tokens", sa.Integer, nullable=False),
    sa.Column("cache_write_tokens", sa.Integer, nullable=False),
    sa.Column("reasoning_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("route_reason", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False),  # pass | fail | error
    sa.Column("quality", sa.Float, nullable=False),
    sa.Column("cost_usd", sa.String(40), nullable=False),
    sa.Column("priced_by_default", sa.Boolean, nullable=False),
    sa.Column("price_registry", sa.String(64), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
)


# Continuous Sentinel registrations: which repos the heartbeat audits (and how often) and
# whose pull requests the PR sensor watches. One row per repo partition.
sentinels_table = sa.Table(
    "casm_sentinels",
    metadata,
    sa.Column("partition_key", sa.String(255), primary_key=True),
    sa.Column("repo", sa.Text, nullable=False),  # owner/name (or a local path)
    sa.Column("schedule", sa.String(16), nullable=False),  # hourly | daily
    sa.Column("template", sa.Text, nullable=False),  # what the heartbeat runs ("": no heartbeat audit)
    sa.Column("pr_template", sa.Text, nullable=False),  # what the PR sensor runs per new head ("": PRs not watched)
    sa.Column("added_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    # A local-path repo's worker queue: the host that registered it has the path (CASM_HOST_QUEUE).
    sa.Column("host_queue", sa.Text),
)

# Webhook deliveries that derived run requests, drained by the PR sensor (its cursor is
# the id). ``delivery_id`` (X-GitHub-Delivery) makes a redelivered hook count once.
webhook_inbox_table = sa.Table(
    "casm_webhook_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("repo", sa.Text, nullable=False),
    sa.Column("pr", sa.Integer, nullable=False),
    sa.Column("head_sha", sa.String(64), nullable=False),
    sa.Column("received_at", sa.String(40), nullable=False),
)

# A run's folder (``<state_dir>/runs/<run_id>/``) published from the host that ran its last
# stage, so any host reads it (PostgreSQL instances only; see stores/run_files.py). One row
# per file; ``version`` is the run's publish counter when the file last changed.
run_files_table = sa.Table(
    "casm_run_files",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("path", sa.Text, primary_key=True),  # relative to the run folder, "/"-separated
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

# The stage values a run hands the next (resources/stage_io.py), keyed by the Dagster run
# that produced them, when the instance is on PostgreSQL: a run worker's disk is its own.
stage_outputs_table = sa.Table(
    "casm_stage_outputs",
    metadata,
    sa.Column("dagster_run_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),  # <asset path>/<partition>
    sa.Column("data", sa.LargeBinary, nullable=False),
)
