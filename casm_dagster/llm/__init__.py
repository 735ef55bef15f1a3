"""Model access (SPEC §5, §8): the provider clients, the model catalog, the router and
per-call telemetry. Plain Python; agents reach models only through ``router.Router``."""
