"""Telemetry as pandas DataFrames, read from CASM's tables in the instance database."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from casm_dagster.stores.db import model_calls_table


def call_events(engine: sa.Engine) -> pd.DataFrame:
    """Every recorded model request (``casm_model_calls``), oldest first; costs stay exact
    decimal strings (sum them with ``Decimal``, never as floats)."""
    t = model_calls_table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.ts, t.c.call_id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in t.columns])
