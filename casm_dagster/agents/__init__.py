"""The agents of SPEC §5 that run without a model: reviewer, fixer, validator, benchmarker."""
