"""``casm webhook serve``: a small HTTP receiver that verifies GitHub's signature and hands
each delivery to ``on_delivery`` (the same handler as ``casm webhook``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from casm_dagster.github.webhooks import WebhookError, verify_signature
from casm_dagster.safety.redact import redact

MAX_PAYLOAD_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
# (event, payload, delivery id) -> the records it derived
Delivery = Callable[[str, Any, "str | None"], list[dict[str, Any]]]


def serve(host: str, port: int, secret: str, on_delivery: Delivery, log: Callable[[str], None]) -> ThreadingHTTPServer:
    """A small receiver: POST a GitHub webhook; 401 on a bad signature, 400 on a malformed
    payload, 202 with the derived records otherwise (ping → 200)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops sending is dropped

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per delivery, via ``log``
            return

        def _answer(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_PAYLOAD_BYTES:
                self._answer(413 if length > 0 else 400, {"error": "bad or missing Content-Length"})
                return
            body = self.rfile.read(length)
            event = self.headers.get("X-GitHub-Event", "")
            delivery = self.headers.get("X-GitHub-Delivery") or None
            try:
                verify_signature(secret, body, self.headers.get("X-Hub-Signature-256"))
            except WebhookError as exc:
                log(f"{delivery}: refused: {exc}")
                self._answer(401, {"error": str(exc)})
                return
            if event == "ping":
                self._answer(200, {"ok": True})
                return
            try:
                records = on_delivery(event, json.loads(body), delivery)
            except (WebhookError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                log(f"{delivery}: {event}: rejected: {exc}")
                self._answer(400, {"error": str(exc)})
                return
            except Exception as exc:  # noqa: BLE001 - GitHub should see a 500 and redeliver, not a reset
                log(f"{delivery}: {event}: failed: {type(exc).__name__}: {redact(str(exc))}")
                self._answer(500, {"error": "internal error; see the receiver's log"})
                return
            log(f"{delivery}: {event}: {len(records)} records")
            self._answer(202, {"records": records})

    return ThreadingHTTPServer((host, port), Handler)
