"""Repos are Dagster dynamic partitions, one per repository (keys are slugs: no ``/``)."""

import dagster as dg

repos_partitions = dg.DynamicPartitionsDefinition(name="repos")
