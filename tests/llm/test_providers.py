"""The provider clients through the real ``openai`` and ``anthropic`` SDKs, against a local
server that speaks their wire formats (``llm.fakes``): what is sent, how replies and usage
are read, what every failure becomes, and that no key leaks into an error."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from casm_dagster.cost.prices import load_prices
from casm_dagster.cost.usage import Usage, llm_cost
from casm_dagster.llm.catalog import OFFLINE_MODEL, OFFLINE_PROVIDER, load_catalog
from casm_dagster.llm.providers import (
    AnthropicClient,
    Client,
    Clients,
    OfflineClient,
    OpenAICompatClient,
    Prompt,
    ProviderError,
    parse_retry_after,
)
from casm_dagster.llm.tokens import estimate_tokens
from casm_dagster.safety.redact import REDACTED
from llm.fakes import Disconnect, Error, FakeModelServer, Hang, Reply, anthropic_usage, openai_usage

# Keys shaped like the real ones; they live in the environment like the real ones (fixture below).
KEYS = {
    "openai": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0f",
    "kimi": "sk-" + "Mo0nSh0tK3yAbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab",
    "hf": "hf_" + "HuGgInGfAcEtOkEnAbCdEfGhIjKlMnOpQr",
    "anthropic": "sk-ant-api03-" + "An7hRoPiCkEyAbCdEfGhIjKlMnOpQrStUvWxYz01",
}
KEY_ENV = {"openai": "OPENAI_API_KEY", "kimi": "MOONSHOT_API_KEY", "hf": "HF_TOKEN", "anthropic": "ANTHROPIC_API_KEY"}
MODELS = {
    "openai": "gpt-4o-mini",
    "kimi": "kimi-k2-0711-preview",
    "hf": "Qwen/Qwen2.5-Coder-32B-Instruct",
    "anthropic": "claude-haiku-4-5",
}
PROVIDERS = list(MODELS)
APIS = ["openai", "anthropic"]  # one provider per SDK, for the failure paths they share
PROMPT = Prompt(system="You review code.", user="Review this diff.", max_output_tokens=256)
PRICES = load_prices()


@pytest.fixture(autouse=True)
def _keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for provider, name in KEY_ENV.items():
        monkeypatch.setenv(name, KEYS[provider])


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as fake:
        yield fake


def client_for(provider: str, server: FakeModelServer) -> Client:
    if provider == "anthropic":
        return AnthropicClient(KEYS[provider], server.anthropic_base)
    return OpenAICompatClient(provider, KEYS[provider], server.openai_base)


def failure(server: FakeModelServer, provider: str, step: object, timeout: float = 5.0) -> ProviderError:
    """The ProviderError one call raises when the server answers with ``step``; exactly one
    request must reach the server (the SDKs must not retry on their own)."""
    server.script(step)
    with pytest.raises(ProviderError) as caught:
        client_for(provider, server).complete(MODELS[provider], PROMPT, timeout)
    assert len(server.requests) == 1, "the SDK retried by itself"
    assert server.pending == 0
    return caught.value


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


# -- replies, usage and cost --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "wire_usage", "usage", "cost"),
    [
        # OpenAI: prompt_tokens 10 INCLUDES 4 cached -> 6 uncached; 6*0.15 + 4*0.075 + 5*0.60 per 1M
        ("openai", "gpt-4o-mini", openai_usage(10, 5, cached=4), Usage(6, 5, cache_read=4), Decimal("0.0000042")),
        # reasoning tokens are part of completion_tokens, billed as output: 600*1.10 + 400*0.275 + 200*4.40
        (
            "openai",
            "o4-mini",
            openai_usage(1000, 200, cached=400, reasoning=150),
            Usage(600, 200, cache_read=400, reasoning=150),
            Decimal("0.00165"),
        ),
        # Kimi speaks the same format: 400*0.60 + 600*0.15 + 100*2.50
        (
            "kimi",
            "kimi-k2-0711-preview",
            openai_usage(1000, 100, cached=600),
            Usage(400, 100, cache_read=600),
            Decimal("0.00058"),
        ),
        # no cache price listed for this HF model: cached input costs the input price. 1000*0.20 + 100*0.60
        (
            "hf",
            "Qwen/Qwen2.5-Coder-32B-Instruct",
            openai_usage(1000, 100, cached=200),
            Usage(800, 100, cache_read=200),
            Decimal("0.00026"),
        ),
        # Anthropic: input_tokens EXCLUDES cache reads and writes. 100*3 + 50*15 + 2000*0.30 + 300*3.75
        pytest.param(
            "anthropic",
            "claude-sonnet-4-5",
            anthropic_usage(100, 50, cache_read=2000, cache_write=300),
            Usage(100, 50, cache_read=2000, cache_write=300),
            Decimal("0.002775"),
            marks=pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning"),
        ),
        # 10*1 + 5*5 + 4*0.10 + 0*1.25
        (
            "anthropic",
            "claude-haiku-4-5",
            anthropic_usage(10, 5, cache_read=4),
            Usage(10, 5, cache_read=4),
            Decimal("0.0000354"),
        ),
    ],
)
def test_reply_text_usage_and_exact_cost(
    server: FakeModelServer, provider: str, model: str, wire_usage: dict, usage: Usage, cost: Decimal
) -> None:
    server.script(Reply("LGTM, one nit.", usage=wire_usage))
    reply = client_for(provider, server).complete(model, PROMPT, 5)
    assert reply.text == "LGTM, one nit."
    assert reply.usage == usage
    assert reply.model == model  # the server echoed the request's model
    assert reply.request_id and reply.request_id.startswith("req_")  # the request-id header support asks for
    amount = llm_cost(reply.usage, PRICES.rates(provider, model))
    assert isinstance(amount, Decimal)
    assert amount == cost
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reply_model_is_what_the_provider_reported(server: FakeModelServer, provider: str) -> None:
    server.script(Reply("ok", model="snapshot-2025-01-01"))
    reply = client_for(provider, server).complete(MODELS[provider], PROMPT, 5)
    assert reply.model == "snapshot-2025-01-01"


def test_anthropic_text_joins_text_blocks_and_skips_thinking(server: FakeModelServer) -> None:
    blocks = [
        {"type": "thinking", "thinking": "Let me look.", "signature": "c2ln"},
        {"type": "text", "text": '{"findings": '},
        {"type": "text", "text": "[]}"},
    ]
    server.script(Reply(extra={"content": blocks}))
    reply = client_for("anthropic", server).complete(MODELS["anthropic"], PROMPT, 5)
    assert reply.text == '{"findings": []}'


def test_openai_null_content_is_empty_text(server: FakeModelServer) -> None:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
        "finish_reason": "stop",
    }
    server.script(Reply(usage=openai_usage(12, 3), extra={"choices": [choice]}))
    reply = client_for("openai", server).complete(MODELS["openai"], PROMPT, 5)
    assert reply.text == ""
    assert reply.usage == Usage(12, 3)


# -- what reaches the server --------------------------------------------------------------


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize("provider", ["openai", "kimi", "hf"])
def test_chat_completions_request(server: FakeModelServer, provider: str, json_output: bool) -> None:
    prompt = Prompt("Be terse.", "Review main.py.", 321, json_output=json_output)
    client_for(provider, server).complete(MODELS[provider], prompt, 7)
    [request] = server.requests
    assert (request.method, request.path, request.api) == ("POST", "/v1/chat/completions", "openai")
    assert request.headers["authorization"] == f"Bearer {KEYS[provider]}"
    expected = {
        "model": MODELS[provider],
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Review main.py."}],
        # OpenAI's current name; the compatible APIs take the classic one
        ("max_completion_tokens" if provider == "openai" else "max_tokens"): 321,
    }
    if json_output and provider in ("openai", "kimi"):  # HF's router does not take response_format
        expected["response_format"] = {"type": "json_object"}
    assert request.body == expected  # exactly: no stream, no stray parameters
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.headers["x-stainless-read-timeout"] == "7"


@pytest.mark.parametrize("json_output", [False, True])
def test_messages_request(server: FakeModelServer, json_output: bool) -> None:
    prompt = Prompt("Be terse.", "Review main.py.", 321, json_output=json_output)
    client_for("anthropic", server).complete("claude-haiku-4-5", prompt, 7)
    [request] = server.requests
    assert (request.method, request.path, request.api) == ("POST", "/v1/messages", "anthropic")
    assert request.api_key == KEYS["anthropic"]  # x-api-key, or a bearer token (what anthropic 2.x sends)
    assert request.headers.get("anthropic-version")
    assert request.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 321,
        "system": "Be terse.",  # top level, not a message
        "messages": [{"role": "user", "content": "Review main.py."}],
    }
    assert request.headers["x-stainless-retry-count"] == "0"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_clients_reach_each_provider_through_its_env(server: FakeModelServer, provider: str) -> None:
    """How end-to-end runs point CASM at the fake: the base-URL variables of the catalog."""
    env = {
        "OPENAI_API_KEY": KEYS["openai"],
        "OPENAI_BASE_URL": server.openai_base,
        "MOONSHOT_API_KEY": KEYS["kimi"],
        "MOONSHOT_BASE_URL": server.openai_base,
        "HF_TOKEN": KEYS["hf"],
        "HF_BASE_URL": server.openai_base,
        "ANTHROPIC_API_KEY": KEYS["anthropic"],
        "ANTHROPIC_BASE_URL": server.anthropic_base,
    }
    clients = Clients(load_catalog(), env)
    client = clients.get(provider)
    assert client.provider == provider
    assert clients.get(provider) is client  # made once
    assert client.complete(MODELS[provider], PROMPT, 5).text == "ok"
    [request] = server.requests
    assert request.api_key == KEYS[provider]
    assert request.body["model"] == MODELS[provider]
    assert request.api == ("anthropic" if provider == "anthropic" else "openai")


@pytest.mark.parametrize("provider", APIS)
def test_one_request_per_call_and_the_script_in_order(server: FakeModelServer, provider: str) -> None:
    """The SDKs' own retries are off: a 429 with retry-after 0 and a 500 each end their call."""
    server.script(Error(429, retry_after="0"), Error(500), Reply("third time"))
    client = client_for(provider, server)
    kinds = []
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            client.complete(MODELS[provider], PROMPT, 5)
        kinds.append(caught.value.kind)
    assert kinds == ["rate_limited", "server_error"]
    assert len(server.requests) == 2
    assert client.complete(MODELS[provider], PROMPT, 5).text == "third time"
    assert len(server.requests) == 3
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0", "0"]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "retry_after"),
    [
        (Error(429, retry_after="2"), 2.0),
        (Error(429, retry_after_ms="1500"), 1.5),
        (Error(429, retry_after="7", retry_after_ms="250"), 0.25),  # the finer header wins
        (Error(429), None),
    ],
)
@pytest.mark.parametrize("provider", APIS)
def test_rate_limited(server: FakeModelServer, provider: str, step: Error, retry_after: float | None) -> None:
    err = failure(server, provider, step)
    assert err.kind == "rate_limited"
    assert err.status == 429
    assert err.retry_after == retry_after
    assert err.retryable
    assert "HTTP 429" in str(err)


@pytest.mark.parametrize("provider", APIS)
def test_rate_limited_with_an_http_date(server: FakeModelServer, provider: str) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    err = failure(server, provider, Error(429, retry_after=when))
    assert err.kind == "rate_limited"
    assert err.retry_after is not None and 27 <= err.retry_after <= 30


@pytest.mark.parametrize("status", [500, 502, 503, 529])
@pytest.mark.parametrize("provider", APIS)
def test_server_errors_are_retryable(server: FakeModelServer, provider: str, status: int) -> None:
    err = failure(server, provider, Error(status, retry_after="5"))
    assert (err.kind, err.status, err.retry_after) == ("server_error", status, 5.0)
    assert err.retryable
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize("provider", APIS)
def test_a_proxy_html_error_page_is_a_server_error(server: FakeModelServer, provider: str) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = failure(server, provider, Error(502, body=page, content_type="text/html"))
    assert (err.kind, err.status) == ("server_error", 502)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, "bad_request", False),
        (401, "auth", False),
        (403, "auth", False),
        (404, "not_found", False),
        (408, "timeout", False),
        (409, "bad_request", False),
        (413, "bad_request", False),
        (422, "bad_request", False),
        (429, "rate_limited", True),
        (500, "server_error", True),
        (504, "server_error", True),
        (529, "server_error", True),
    ],
)
@pytest.mark.parametrize("provider", APIS)
def test_status_to_kind(server: FakeModelServer, provider: str, status: int, kind: str, retryable: bool) -> None:
    err = failure(server, provider, Error(status))
    assert (err.kind, err.status, err.retryable) == (kind, status, retryable)


@pytest.mark.parametrize("provider", APIS)
def test_auth_error_points_at_the_key(server: FakeModelServer, provider: str) -> None:
    err = failure(server, provider, Error(401))
    assert err.kind == "auth"
    assert "API key" in str(err)
    assert f"{provider}/{MODELS[provider]}" in str(err)


@pytest.mark.parametrize("provider", APIS)
def test_not_found_names_the_model(server: FakeModelServer, provider: str) -> None:
    err = failure(server, provider, Error(404))
    assert err.kind == "not_found"
    assert "unknown model or wrong base URL" in str(err)
    assert MODELS[provider] in str(err)


@pytest.mark.parametrize("provider", APIS)
def test_bad_request_is_not_retryable(server: FakeModelServer, provider: str) -> None:
    err = failure(server, provider, Error(400, message="max_tokens: must be at most 8192"))
    assert (err.kind, err.status, err.retryable) == ("bad_request", 400, False)
    assert "max_tokens: must be at most 8192" in str(err)  # the provider's own explanation survives


@pytest.mark.parametrize("provider", APIS)
def test_a_hanging_server_times_out(server: FakeModelServer, provider: str) -> None:
    started = time.monotonic()
    err = failure(server, provider, Hang(3), timeout=0.5)
    elapsed = time.monotonic() - started
    assert err.kind == "timeout"
    assert err.status is None and err.retry_after is None
    assert not err.retryable  # the router downgrades the model instead
    assert 0.4 <= elapsed < 2.0


@pytest.mark.parametrize("provider", APIS)
def test_connection_refused(provider: str) -> None:
    url = closed_port_url()
    client = (
        AnthropicClient(KEYS[provider], url)
        if provider == "anthropic"
        else OpenAICompatClient(provider, KEYS[provider], url + "/v1")
    )
    with pytest.raises(ProviderError) as caught:
        client.complete(MODELS[provider], PROMPT, 2)
    err = caught.value
    assert (err.kind, err.status, err.retry_after) == ("connection", None, None)
    assert err.retryable
    assert "cannot connect" in str(err)


@pytest.mark.parametrize("provider", APIS)
def test_a_dropped_connection_is_a_connection_error(server: FakeModelServer, provider: str) -> None:
    err = failure(server, provider, Disconnect())
    assert err.kind == "connection"
    assert err.retryable


# -- no key in any error ------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_never_appears_in_an_error(server: FakeModelServer, provider: str, status: int) -> None:
    key = KEYS[provider]
    err = failure(server, provider, Error(status, message=f"Incorrect API key provided: {key}."))
    assert server.requests[0].api_key == key  # the server had it, and echoed it
    assert key not in str(err)
    assert key not in repr(err)
    assert all(key not in str(arg) for arg in err.args)
    assert REDACTED in str(err)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_token_shaped_key_is_redacted_even_outside_the_environment(
    server: FakeModelServer, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV[provider])
    key = KEYS[provider]
    err = failure(server, provider, Error(401, message=f"Incorrect API key provided: {key}."))
    assert key not in str(err)


def test_the_clients_own_key_is_redacted_even_when_only_it_knows_it(
    server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    key = KEYS["hf"]
    server.script(Error(401, message=f"Invalid credentials in Authorization header: {key}"))
    client = Clients(load_catalog(), {"HF_TOKEN": key, "HF_BASE_URL": server.openai_base}).get("hf")
    with pytest.raises(ProviderError) as caught:
        client.complete(MODELS["hf"], PROMPT, 5)
    assert key not in str(caught.value)


# -- malformed successes ------------------------------------------------------------------


@pytest.mark.parametrize("body", ["<html>Welcome to the hotel wifi</html>", '{"id": "chatcmpl-1", "choi', "[]"])
@pytest.mark.parametrize("provider", APIS)
def test_a_malformed_success_is_a_provider_error(server: FakeModelServer, provider: str, body: str) -> None:
    err = failure(server, provider, Error(200, body=body))
    assert err.kind == "server_error"


# -- parse_retry_after --------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        (None, None),
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),  # a bad ms header falls back
        ({"retry-after": email.utils.formatdate(NOW + 120, usegmt=True)}, 120.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past: no wait
        ({"retry-after": "in a while"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds


def test_parse_retry_after_dates_count_from_now() -> None:
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 58 <= parse_retry_after({"retry-after": when}) <= 60


# -- offline ------------------------------------------------------------------------------


def test_offline_client_answers_without_a_model(server: FakeModelServer) -> None:
    prompt = Prompt("system text", "user text", 100, json_output=True, offline_answer='{"findings": []}')
    env = {"OPENAI_API_KEY": KEYS["openai"], "OPENAI_BASE_URL": server.openai_base}
    client = Clients(load_catalog(), env).get(OFFLINE_PROVIDER)
    assert isinstance(client, OfflineClient)
    reply = client.complete("anything", prompt, 0.001)
    assert reply.text == '{"findings": []}'
    assert (reply.model, reply.request_id) == (OFFLINE_MODEL, None)
    # estimates: 16 overhead + ceil(bytes / 4); "system text\nuser text" is 21 bytes, the answer 16
    assert reply.usage == Usage(input=16 + 6, output=16 + 4)
    assert reply.usage == Usage(input=estimate_tokens(prompt.text), output=estimate_tokens(prompt.offline_answer))
    assert llm_cost(reply.usage, PRICES.rates(OFFLINE_PROVIDER, OFFLINE_MODEL)) == 0
    assert server.requests == []  # nothing was sent


def test_offline_client_with_nothing_to_say() -> None:
    reply = OfflineClient().complete("deterministic", Prompt("s", "u", 10), 1)
    assert reply.text == ""
    assert reply.usage.output == 0
