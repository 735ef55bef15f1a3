"""The fake model server itself: its wire shapes (read raw, without an SDK), scripting,
responder, default, key check and request log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from casm_dagster.llm.providers import AnthropicClient, OpenAICompatClient, Prompt, ProviderError
from llm.fakes import Error, FakeModelServer, Hang, Reply, anthropic_usage, openai_usage

PROMPT = Prompt("s", "u", 16)


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.load(err)


def test_chat_completion_wire_shape() -> None:
    with FakeModelServer() as server:
        server.script(Reply("hi", usage=openai_usage(10, 5, cached=4, reasoning=2)))
        status, headers, body = post(server.openai_base + "/chat/completions", {"model": "gpt-x", "messages": []})
    assert status == 200
    assert headers["x-request-id"].startswith("req_")
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-x"
    [choice] = body["choices"]
    assert (choice["index"], choice["finish_reason"]) == (0, "stop")
    assert (choice["message"]["role"], choice["message"]["content"]) == ("assistant", "hi")
    assert body["usage"]["prompt_tokens"] == 10
    assert body["usage"]["total_tokens"] == 15
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 4
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2


def test_message_wire_shape() -> None:
    with FakeModelServer() as server:
        server.script(
            Reply("hi", usage=anthropic_usage(10, 5, cache_read=3, cache_write=2), finish_reason="max_tokens")
        )
        status, headers, body = post(server.anthropic_base + "/v1/messages", {"model": "claude-x", "messages": []})
    assert status == 200
    assert headers["request-id"].startswith("req_")
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-x")
    assert body["content"] == [{"type": "text", "text": "hi"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("max_tokens", None)
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 5)
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (3, 2)


def test_error_wire_shapes() -> None:
    with FakeModelServer() as server:
        server.script(Error(429, retry_after="2"), Error(529, retry_after_ms="1500"))
        status, headers, body = post(server.openai_base + "/chat/completions", {"model": "gpt-x"})
        assert (status, headers["retry-after"]) == (429, "2")
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == "rate_limit_exceeded"
        status, headers, body = post(server.anthropic_base + "/v1/messages", {"model": "claude-x"})
        assert (status, headers["retry-after-ms"]) == (529, "1500")
        assert body["type"] == "error"
        assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
        assert body["request_id"] == headers["request-id"]


def test_unknown_path_is_a_404_and_is_recorded() -> None:
    with FakeModelServer() as server:
        status, _, body = post(server.url + "/v1/embeddings", {"model": "e"})
        assert status == 404
        assert "Unknown request URL" in body["error"]["message"]
        [request] = server.requests
        assert (request.api, request.path, request.body) == (None, "/v1/embeddings", {"model": "e"})


def test_script_then_responder_then_default() -> None:
    def responder(api: str, body: Any) -> Reply | None:
        return Reply(f"{api}:{body['model']}") if body["model"].startswith("smart") else None

    with FakeModelServer(responder=responder, default=Error(503)) as server:
        client = OpenAICompatClient("openai", "k", server.openai_base)
        server.script(Reply("scripted"))
        assert client.complete("smart-1", PROMPT, 5).text == "scripted"  # the script comes first
        assert client.complete("smart-1", PROMPT, 5).text == "openai:smart-1"
        assert AnthropicClient("k", server.anthropic_base).complete("smart-2", PROMPT, 5).text == "anthropic:smart-2"
        with pytest.raises(ProviderError) as caught:  # the responder declines: the default
            client.complete("dull", PROMPT, 5)
        assert caught.value.status == 503
        assert [r.body["model"] for r in server.requests] == ["smart-1", "smart-1", "smart-2", "dull"]
        times = [r.received_at for r in server.requests]
        assert times == sorted(times)


def test_api_key_is_checked_when_given() -> None:
    with FakeModelServer(api_key="right") as server:
        assert OpenAICompatClient("openai", "right", server.openai_base).complete("m", PROMPT, 5).text == "ok"
        assert AnthropicClient("right", server.anthropic_base).complete("m", PROMPT, 5).text == "ok"
        for client in (OpenAICompatClient("openai", "wrong", server.openai_base), AnthropicClient("wrong", server.url)):
            with pytest.raises(ProviderError) as caught:
                client.complete("m", PROMPT, 5)
            assert caught.value.kind == "auth"


def test_hang_then_answers_late() -> None:
    with FakeModelServer() as server:
        server.script(Hang(0.3, then=Reply("late")))
        started = time.monotonic()
        assert OpenAICompatClient("openai", "k", server.openai_base).complete("m", PROMPT, 5).text == "late"
        assert time.monotonic() - started >= 0.3


def test_closing_ends_a_hang() -> None:
    server = FakeModelServer().start()
    server.script(Hang(30))
    with pytest.raises(ProviderError):
        OpenAICompatClient("openai", "k", server.openai_base).complete("m", PROMPT, 0.2)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 2
