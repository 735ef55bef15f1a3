"""Dagster ops. Empty today: the gated continuation (HITL) lands here."""
