"""Provider clients behind one small interface: OpenAI, Kimi and Hugging Face through the
official ``openai`` SDK (all three speak Chat Completions), Anthropic through the official
``anthropic`` SDK, and the offline provider that calls nothing.

The SDKs' own retries are off (``max_retries=0``): the router retries, so every attempt
is counted, costed and recorded, and ``retry-after`` decides the wait. Keys come from the
environment and are handed to the SDK only; error texts are redacted before anyone sees
them.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from casm_dagster.cost.usage import Usage, from_anthropic, from_openai
from casm_dagster.llm.catalog import OFFLINE_MODEL, OFFLINE_PROVIDER, Catalog, ProviderInfo
from casm_dagster.llm.tokens import estimate_tokens
from casm_dagster.safety.redact import redact

ErrorKind = Literal["timeout", "rate_limited", "server_error", "connection", "auth", "not_found", "bad_request"]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server_error", "connection"})


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str
    max_output_tokens: int
    json_output: bool = False
    offline_answer: str = ""  # what the offline provider answers: the agent's "nothing to add"

    @property
    def text(self) -> str:
        return f"{self.system}\n{self.user}"


def prompt_sha256(prompt: Prompt) -> str:
    """What a replay matches recorded answers by (a task's prompt is deterministic)."""
    return hashlib.sha256(f"{prompt.system}\0{prompt.user}".encode()).hexdigest()


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage
    model: str  # as the provider reported it
    request_id: str | None = None


class ProviderError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        secrets: tuple[str, ...] = (),
    ):
        super().__init__(redact(message, [s for s in secrets if s]))
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Client(Protocol):
    provider: str

    def complete(self, model: str, prompt: Prompt, timeout: float) -> Reply: ...


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _kind_for_status(status: int) -> ErrorKind:
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    return "bad_request"


_MALFORMED = (ValueError, TypeError, AttributeError, IndexError, KeyError)


def _malformed(provider: str, model: str, exc: Exception, key: str) -> ProviderError:
    """A 200 whose body is not the API's response (a proxy's page, truncated JSON…)."""
    return ProviderError(
        "server_error", f"{provider}/{model}: malformed response ({type(exc).__name__})", secrets=(key,)
    )


def _translate(exc: Exception, sdk: Any, provider: str, model: str, key: str) -> ProviderError:
    where = f"{provider}/{model}"
    secrets = (key,)
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError("timeout", f"{where}: request timed out", secrets=secrets)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        kind = _kind_for_status(status)
        hint = ""
        if kind == "auth":
            hint = " (check the provider's API key and its access to this model)"
        elif kind == "not_found":
            hint = " (unknown model or wrong base URL)"
        return ProviderError(
            kind,
            f"{where}: HTTP {status}: {exc.message}{hint}",
            status,
            parse_retry_after(exc.response.headers),
            secrets=secrets,
        )
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError("connection", f"{where}: cannot connect: {exc.__cause__ or exc}", secrets=secrets)
    return ProviderError("bad_request", f"{where}: {type(exc).__name__}: {exc}", secrets=secrets)


class OpenAICompatClient:
    """Chat Completions via the ``openai`` SDK, for OpenAI itself and compatible APIs."""

    def __init__(self, provider: str, api_key: str, base_url: str | None) -> None:
        import openai

        self.provider = provider
        self._key = api_key
        self._sdk = openai
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)

    def complete(self, model: str, prompt: Prompt, timeout: float) -> Reply:
        args: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}],
            "timeout": timeout,
        }
        if self.provider == "openai":
            args["max_completion_tokens"] = prompt.max_output_tokens
        else:  # compatible APIs accept the classic name
            args["max_tokens"] = prompt.max_output_tokens
        if prompt.json_output and self.provider in ("openai", "kimi"):
            args["response_format"] = {"type": "json_object"}
        try:
            response = self._client.chat.completions.create(**args)
            if not response.choices or response.usage is None:
                raise ValueError("no choices or no usage")
            text = response.choices[0].message.content or ""
            return Reply(
                text, from_openai(response.usage), response.model or model, getattr(response, "_request_id", None)
            )
        except self._sdk.OpenAIError as exc:
            raise _translate(exc, self._sdk, self.provider, model, self._key) from None
        except _MALFORMED as exc:
            raise _malformed(self.provider, model, exc, self._key) from None


class AnthropicClient:
    """The Messages API via the ``anthropic`` SDK."""

    provider = "anthropic"

    def __init__(self, api_key: str, base_url: str | None) -> None:
        import anthropic

        self._key = api_key
        self._sdk = anthropic
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0)

    def complete(self, model: str, prompt: Prompt, timeout: float) -> Reply:
        try:
            response = self._client.messages.create(
                model=model,
                max_tokens=prompt.max_output_tokens,
                system=prompt.system,
                messages=[{"role": "user", "content": prompt.user}],
                timeout=timeout,
            )
            if response.content is None or response.usage is None:
                raise ValueError("no content or no usage")
            text = "".join(getattr(block, "text", "") or "" for block in response.content)
            return Reply(
                text, from_anthropic(response.usage), response.model or model, getattr(response, "_request_id", None)
            )
        except self._sdk.AnthropicError as exc:
            raise _translate(exc, self._sdk, self.provider, model, self._key) from None
        except _MALFORMED as exc:
            raise _malformed(self.provider, model, exc, self._key) from None


class OfflineClient:
    """No model: answers every task with the agent's own "nothing to add", deterministically,
    at zero cost. Token counts are estimates of the prompt and answer (nothing was sent)."""

    provider = OFFLINE_PROVIDER

    def complete(self, model: str, prompt: Prompt, timeout: float) -> Reply:
        usage = Usage(input=estimate_tokens(prompt.text), output=estimate_tokens(prompt.offline_answer))
        return Reply(prompt.offline_answer, usage, OFFLINE_MODEL, None)


def make_client(name: str, info: ProviderInfo, env: Mapping[str, str]) -> Client:
    key = env.get(info.key_env, "")
    base_url = env.get(info.base_url_env) or info.default_base_url
    if info.sdk == "anthropic":
        return AnthropicClient(key, base_url)
    return OpenAICompatClient(name, key, base_url)


class Clients:
    """One client per provider, made on first use (an SDK client is not free to build)."""

    def __init__(self, catalog: Catalog, env: Mapping[str, str] | None = None) -> None:
        self._catalog = catalog
        self._env = dict(os.environ if env is None else env)
        self._made: dict[str, Client] = {OFFLINE_PROVIDER: OfflineClient()}

    def get(self, provider: str) -> Client:
        if provider not in self._made:
            info = self._catalog.model.providers[provider]
            self._made[provider] = make_client(provider, info, self._env)
        return self._made[provider]
