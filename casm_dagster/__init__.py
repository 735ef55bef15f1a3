"""CASM: a governed swarm of code agents, run on Dagster.

Domain logic lives in plain modules (contracts, agents, pipeline, stores); Dagster wiring
lives in ``assets/``, ``ops/``, ``sensors/``, ``resources/`` and ``definitions.py``.
"""

__version__ = "0.1.0"
