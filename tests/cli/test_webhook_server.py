"""The webhook receiver: a signed delivery is queued once for the PR sensor; an unsigned or
wrongly signed one is refused with 401; a malformed one gets 400; ping is answered."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request

import dagster as dg

from casm_dagster.assets.partitions import repos_partitions
from casm_dagster.cli.sentinel import store
from casm_dagster.cli.webhook import handle
from casm_dagster.cli.webhook_server import serve
from casm_dagster.resources.instance import instance_db_url
from casm_dagster.stores.db import engine_for
from casm_dagster.stores.repos import RepoRegistry

SECRET = "a-webhook-secret-of-some-length"


def _post(url: str, event: str, body: bytes, signature: str | None, delivery: str) -> tuple[int, dict]:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_receiver_verifies_signatures_and_queues_once() -> None:
    with dg.instance_for_test() as instance:
        record = RepoRegistry(engine_for(instance_db_url(instance))).add("github", "acme/app")
        instance.add_dynamic_partitions(repos_partitions.name, [record.partition_key])
        store(instance).register(record.partition_key, "acme/app", "daily", "repo-auditor", "pr-sentinel")
        lines: list[str] = []
        server = serve("127.0.0.1", 0, SECRET, lambda e, p, d: handle(instance, e, p, False, d), lines.append)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            payload = {
                "action": "opened",
                "pull_request": {"number": 3, "draft": False, "head": {"sha": "d" * 40}},
                "repository": {"full_name": "acme/app"},
                "sender": {"login": "alice"},
            }
            body = json.dumps(payload).encode()
            assert _post(url, "pull_request", body, None, "d1")[0] == 401
            assert _post(url, "pull_request", body, _sign(body, "wrong-secret-wrong"), "d1")[0] == 401
            status, answer = _post(url, "pull_request", body, _sign(body), "d1")
            assert status == 202
            (derived,) = answer["records"]
            assert derived["run_key"] == f"pr:{record.partition_key}:3:{'d' * 40}" and derived["queued"] is True
            # GitHub redelivers: the same delivery id is not queued twice.
            assert _post(url, "pull_request", body, _sign(body), "d1")[1]["records"][0]["queued"] is False
            bad = b'{"action": "opened"}'
            assert _post(url, "pull_request", bad, _sign(bad), "d2")[0] == 400
            ping = b'{"zen": "hi"}'
            assert _post(url, "ping", ping, _sign(ping), "d3")[0] == 200
            items = store(instance).inbox_after(0, 10)
            assert [(i.delivery_id, i.pr, i.head_sha) for i in items] == [("d1", 3, "d" * 40)]
            assert any("refused" in line for line in lines)
        finally:
            server.shutdown()
            server.server_close()
