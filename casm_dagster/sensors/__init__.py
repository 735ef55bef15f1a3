"""Dagster sensors and schedules: the HITL approval sensor (``sensors/hitl.py``). The PR
sensor and the heartbeat schedule land here too."""
