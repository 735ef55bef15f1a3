"""The Celery app a worker host serves: ``celery -A casm_dagster.jobs.celery_worker worker``.

dagster-celery's run tasks (``CeleryRunLauncher`` in ``infra/dagster/dagster.celery.yaml``
sends whole audits here), configured from the environment rather than from the module
`dagster-celery worker start` writes to disk with the broker URL, password included.
"""

import os

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

BROKER_ENV, BACKEND_ENV, QUEUE_ENV = "CASM_CELERY_BROKER", "CASM_CELERY_BACKEND", "CASM_CELERY_QUEUE"
DEFAULT_QUEUE = "casm"

app = make_app(
    {
        "broker": os.environ.get(BROKER_ENV, "pyamqp://guest@127.0.0.1:5672//"),
        "backend": os.environ.get(BACKEND_ENV, "redis://127.0.0.1:6379/0"),
        "include": [],
        # One audit per worker process at a time, and none reserved while one runs: a queued
        # audit waits in the broker for whichever host frees up first.
        "config_source": {"worker_prefetch_multiplier": 1},
        "task_default_queue": os.environ.get(QUEUE_ENV, DEFAULT_QUEUE),
    }
)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)  # registered for completeness; resumes are off (see the yaml)
