"""Tests of ``github_fake.fake_github``: a local server speaking GitHub's REST API (checked against GitHub's
own OpenAPI description, ``github_fake.openapi``) and git smart HTTP, for driving PyGithub and plain ``git``.

(Not ``tests/github``: with ``pythonpath = ["tests"]`` a package named ``github`` would shadow PyGithub.)"""
