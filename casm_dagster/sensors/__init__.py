"""Dagster sensors and schedules. Empty today: the HITL approval sensor, the PR sensor and
the heartbeat schedule land here."""
