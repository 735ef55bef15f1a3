"""Production storage: a complete audit whose runs and event log land in PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from helpers import last_json, postgres_home, run_casm

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_audit_run_lands_in_postgres(pg_database, demo_repo: Path, workdir: Path, casm_env, tmp_path: Path) -> None:
    home = tmp_path / "pg_home"
    env = casm_env | postgres_home(home, pg_database)
    proc = run_casm(["run", "--template", "repo-auditor", "--repo", str(demo_repo), "--json"], workdir, env)
    assert proc.returncode == 0, proc.stderr
    out = last_json(proc.stdout)
    assert out["status"] == "succeeded"

    conn = psycopg2.connect(host=pg_database["host"], port=pg_database["port"], user=pg_database["user"],
                            dbname=pg_database["db"])  # fmt: skip
    try:
        cur = conn.cursor()
        cur.execute("SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                    "WHERE t.key = 'casm/run_id' AND t.value = %s", (out["run_id"],))  # fmt: skip
        rows = cur.fetchall()
        assert len(rows) == 1 and rows[0][1] == "SUCCESS"
        dagster_run_id = rows[0][0]
        assert dagster_run_id == out["dagster_run_id"]
        cur.execute("SELECT dagster_event_type, asset_key FROM event_logs WHERE run_id = %s", (dagster_run_id,))
        events = cur.fetchall()
        materialized = {key for kind, key in events if kind == "ASSET_MATERIALIZATION"}
        assert {'["repo_snapshot"]', '["review_findings"]', '["patch_plan"]', '["applied_patches"]',
                '["validation_result"]', '["audit_report"]'} <= materialized  # fmt: skip
        kinds = {kind for kind, _ in events}
        assert {dg.DagsterEventType.RUN_START.value, dg.DagsterEventType.RUN_SUCCESS.value} <= kinds
        # The repo registry and the dynamic partition live in the same database.
        cur.execute("SELECT partition_key, kind FROM casm_repos")
        ((key, kind),) = cur.fetchall()
        assert kind == "local"
        cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'repos'")
        assert cur.fetchall() == [(key,)]
    finally:
        conn.close()
    # No SQLite storage was created in the Postgres-configured home.
    assert not (home / "storage" / "runs.db").exists()
