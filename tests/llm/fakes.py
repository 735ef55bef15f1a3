"""A local HTTP server that speaks the real wire formats of the OpenAI Chat Completions API
(``POST /v1/chat/completions``) and the Anthropic Messages API (``POST /v1/messages``), for
driving the official SDKs without the internet.

    with FakeModelServer() as server:
        server.script(Reply("hi", usage=openai_usage(10, 5, cached=4)), Error(429, retry_after="2"))
        client = OpenAICompatClient("openai", key, server.openai_base)   # or OPENAI_BASE_URL=server.openai_base
        ...
        assert server.requests[0].body["model"] == "gpt-4o-mini"

Each request takes the next scripted step; once the script is empty, ``responder(api, body)``
answers (when given and it returns a step), else ``default``. Steps: ``Reply`` (a completion),
``Error`` (an error response in the API's own shape), ``Hang`` (wait, then answer) and
``Disconnect`` (close the connection without answering). Every request is recorded in
``server.requests``. Responses echo the request's model.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

OPENAI, ANTHROPIC = "openai", "anthropic"
ROUTES = {"/v1/chat/completions": OPENAI, "/v1/messages": ANTHROPIC}
REQUEST_ID_HEADER = {OPENAI: "x-request-id", ANTHROPIC: "request-id"}


@dataclass(frozen=True)
class Reply:
    """A successful completion."""

    text: str = "ok"
    usage: Mapping[str, Any] | None = None  # the API's own usage object (see *_usage); None: counted roughly
    finish_reason: str | None = None  # OpenAI finish_reason / Anthropic stop_reason; None: "stop" / "end_turn"
    model: str | None = None  # None: the request's model
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # merged into the body's top level (e.g. "content")


@dataclass(frozen=True)
class Error:
    """An error response: the API's error JSON, or ``body`` verbatim (e.g. a proxy's HTML page)."""

    status: int
    message: str | None = None  # None: the API's usual message for the status
    type: str | None = None  # error.type; None: the API's usual type for the status
    code: str | None = None  # OpenAI's error.code; None: the usual one for the status
    retry_after: str | None = None  # the ``retry-after`` header (seconds or an HTTP date)
    retry_after_ms: str | None = None  # the ``retry-after-ms`` header
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    """Wait ``seconds`` before answering with ``then`` (a plain ``Reply()`` if None); a client
    that timed out meanwhile gets nothing. Closing the server ends the wait."""

    seconds: float
    then: Reply | Error | Disconnect | None = None


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without sending a response."""


Step = Reply | Error | Hang | Disconnect
Responder = Callable[[str, Any], Step | None]  # (api, parsed body) -> step, or None for ``default``


@dataclass(frozen=True)
class Request:
    api: str | None  # "openai", "anthropic", or None for an unknown path
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON body (None if it was not JSON)
    received_at: float  # time.monotonic()

    @property
    def api_key(self) -> str | None:
        """The key the client sent, as ``x-api-key`` or as a bearer token."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None


def openai_usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """Chat Completions usage: ``prompt_tokens`` INCLUDES the ``cached_tokens``, and
    ``completion_tokens`` includes the ``reasoning_tokens``."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def anthropic_usage(input: int, output: int, *, cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    """Messages usage: ``input_tokens`` EXCLUDES cache reads and cache writes."""
    return {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "service_tier": "standard",
    }


# status -> (error.type, error.code, message) as the real APIs word them
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to sample from this model."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model}. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _completion(api: str, body: Any, reply: Reply) -> dict[str, Any]:
    model = reply.model or (body or {}).get("model") or "unknown"
    prompt_tokens = max(1, len(json.dumps((body or {}).get("messages", []))) // 4)
    output_tokens = max(1, len(reply.text) // 4)
    if api == OPENAI:
        out: dict[str, Any] = {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or "stop",
                }
            ],
            "usage": dict(reply.usage) if reply.usage is not None else openai_usage(prompt_tokens, output_tokens),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    else:
        out = {
            "id": _new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": reply.finish_reason or "end_turn",
            "stop_sequence": None,
            "usage": dict(reply.usage) if reply.usage is not None else anthropic_usage(prompt_tokens, output_tokens),
        }
    out.update(reply.extra)
    return out


def _error_body(api: str, body: Any, error: Error, request_id: str) -> dict[str, Any]:
    model = (body or {}).get("model") if isinstance(body, dict) else None
    if api == OPENAI:
        kind, code, message = _OPENAI_ERRORS.get(error.status, _OPENAI_ERRORS[500 if error.status >= 500 else 400])
        return {
            "error": {
                "message": error.message if error.message is not None else message.format(model=model),
                "type": error.type or kind,
                "param": None,
                "code": error.code if error.code is not None else code,
            }
        }
    kind, message = _ANTHROPIC_ERRORS.get(error.status, _ANTHROPIC_ERRORS[500 if error.status >= 500 else 400])
    return {
        "type": "error",
        "error": {
            "type": error.type or kind,
            "message": error.message if error.message is not None else message.format(model=model),
        },
        "request_id": request_id,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeModelServer


class FakeModelServer:
    """Both APIs on ``127.0.0.1`` and a free port, served from a daemon thread; use it as a
    context manager. ``api_key``: when given, requests without it get the API's 401."""

    def __init__(
        self,
        *,
        default: Step | None = None,
        responder: Responder | None = None,
        api_key: str | None = None,
    ) -> None:
        self.default: Step = default if default is not None else Reply()
        self.responder = responder
        self.api_key = api_key
        self.requests: list[Request] = []
        self._script: deque[Step] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeModelServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-model-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # ends any Hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    # -- behaviour

    def script(self, *steps: Step) -> FakeModelServer:
        """Queue steps, one per coming request (after any still queued)."""
        with self._lock:
            self._script.extend(steps)
        return self

    @property
    def pending(self) -> int:
        """Scripted steps not consumed yet."""
        with self._lock:
            return len(self._script)

    def _next_step(self, api: str, body: Any) -> Step:
        with self._lock:
            if self._script:
                return self._script.popleft()
        step = self.responder(api, body) if self.responder is not None else None
        return step if step is not None else self.default

    # -- serving

    def _handle(self, handler: _Handler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(handler.path).path
        api = ROUTES.get(path) if handler.command == "POST" else None
        request = Request(
            api=api,
            method=handler.command,
            path=path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
        if api is None:
            step: Step = Error(404, message=f"Unknown request URL: {handler.command} {path}.", code="unknown_url")
        elif self.api_key is not None and request.api_key != self.api_key:
            step = Error(401)
        else:
            step = self._next_step(api, body)
        try:
            self._perform(handler, api or OPENAI, body, step)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            handler.close_connection = True

    def _perform(self, handler: _Handler, api: str, body: Any, step: Step) -> None:
        if isinstance(step, Hang):
            if self._closing.wait(step.seconds):
                handler.close_connection = True
                return
            step = step.then if step.then is not None else Reply()
        if isinstance(step, Disconnect):
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        request_id = _new_id("req_")
        headers = {REQUEST_ID_HEADER[api]: request_id}
        if isinstance(step, Reply):
            status, content_type, data = 200, "application/json", json.dumps(_completion(api, body, step)).encode()
        else:
            status, content_type = step.status, step.content_type
            payload = step.body if step.body is not None else json.dumps(_error_body(api, body, step, request_id))
            data = payload.encode()
            if step.retry_after is not None:
                headers["retry-after"] = step.retry_after
            if step.retry_after_ms is not None:
                headers["retry-after-ms"] = step.retry_after_ms
        headers.update(step.headers)
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
