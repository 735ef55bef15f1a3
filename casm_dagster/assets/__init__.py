"""Dagster assets. ``stages`` holds the audit workflow, one asset per stage."""
