"""Typed contracts (pydantic v2) shared by every stage: manifests, events, findings, plans,
validation results. Artifacts on disk are these models serialized as JSON."""
