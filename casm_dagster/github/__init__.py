"""GitHub mode: the PyGithub connector (``connector.py``), the local mirror the audits run
in (``mirror.py``), hidden comment markers (``markers.py``) and webhook payloads
(``webhooks.py``). Plain Python: nothing here imports Dagster."""
