"""Dagster ops: the HITL continuation job (``ops/hitl.py``)."""
