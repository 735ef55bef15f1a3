"""casm_dagster.safety.redact: token shapes and secret env values are scrubbed, nothing else."""

from __future__ import annotations

import pytest

from casm_dagster.safety.redact import REDACTED, is_secret_name, redact, secret_env_values

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA7bq9R1n0mZ2o3Qx\n"
    "x8YpQw2nV0F5r3l9zK1bXkq7Uu0=\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8",  # 36 chars after the prefix
        "gho_" + "Z" * 36,
        "ghs_" + "0" * 40,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        "xoxp-1234567890-abcdef",
        "sk-ant-api03-" + "q" * 40,
        "sk-proj-" + "R2d2C3po" * 4,
        "sk-" + "a" * 48,
        PEM,
        "-----BEGIN PRIVATE KEY-----\nABCDEF\n-----END PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_token_shapes_are_replaced(token: str) -> None:
    text = f"before {token} after"
    assert redact(text) == f"before {REDACTED} after"


def test_several_tokens_in_one_text() -> None:
    ghp = "ghp_" + "x" * 36
    akia = "AKIAABCDEFGHIJKLMNOP"
    text = f"token={ghp}\naws={akia}\nkey:\n{PEM}\nend"
    assert redact(text) == f"token={REDACTED}\naws={REDACTED}\nkey:\n{REDACTED}\nend"


@pytest.mark.parametrize(
    "near_miss",
    [
        "ghp_" + "x" * 35,  # too short to be a GitHub token
        "AKIA1234",  # too short for an AWS access key id
        "xoxb-short",  # too short for a Slack token
        "sk-notakey",  # too short for an API key
        "-----BEGIN PUBLIC KEY-----\nABCDEF\n-----END PUBLIC KEY-----",  # public keys are fine
    ],
)
def test_near_misses_are_untouched(near_miss: str) -> None:
    assert redact(near_miss) == near_miss


@pytest.mark.parametrize(
    "name",
    ["GITHUB_TOKEN", "OPENAI_API_KEY", "MY_APIKEY", "DB_PASSWORD", "aws_secret_access_key", "GCP_CREDENTIALS",
     "SSH_PRIVATE_KEY", "PASSWD", "AWS_ACCESS_KEY_ID"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["HOME", "PATH", "USER", "LANG", "EDITOR", "KEYBOARD_LAYOUT"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_env_values_with_secret_names_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2-correct-horse")
    monkeypatch.setenv("INTERNAL_API_KEY", "plainlookingvalue42")
    monkeypatch.setenv("CASM_TEST_EDITOR", "plainlookingvalue99")  # not a secret name
    text = "connect pw=hunter2-correct-horse key plainlookingvalue42 editor plainlookingvalue99"
    assert redact(text) == f"connect pw={REDACTED} key {REDACTED} editor plainlookingvalue99"


def test_short_secret_values_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # would redact ordinary words
    assert redact("abc abcdef") == "abc abcdef"
    assert "abc" not in secret_env_values()


def test_secret_env_values_longest_first_and_explicit_environ() -> None:
    environ = {"A_TOKEN": "secretvalue", "B_SECRET": "secretvalue-longer", "HOME": "/home/someone", "C_KEY": "x"}
    assert secret_env_values(environ) == ["secretvalue-longer", "secretvalue"]


def test_longer_secret_replaced_whole_when_one_contains_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_TOKEN", "secretvalue")
    monkeypatch.setenv("B_SECRET", "secretvalue-longer")
    assert redact("x secretvalue-longer y secretvalue z") == f"x {REDACTED} y {REDACTED} z"


def test_extra_values_are_replaced() -> None:
    assert redact("user=alice pass=opensesame", extra_values=["opensesame", ""]) == f"user=alice pass={REDACTED}"


def test_ordinary_text_is_untouched() -> None:
    text = (
        "def main():\n    # TODO: skip tokens\n    return compute(sk, ghp, akia)  # task-force\n"
        "Visit https://example.com/path?q=1 and run `pytest -q`.\n"
        "hash 3f786850e387550fdab836ed7e6dc881de23001b\n"
    )
    assert redact(text) == text


def test_a_secret_set_after_a_text_was_redacted_is_redacted_in_it_next_time(monkeypatch) -> None:
    """Redaction results are reused for a repeated text (each prompt of a file), never across
    a change of the secret values it scrubs."""
    text = "connect with s3cr3t-Valu3-9 please"
    assert redact(text) == text
    monkeypatch.setenv("CASM_TEST_API_KEY", "s3cr3t-Valu3-9")
    assert redact(text) == f"connect with {REDACTED} please"
    assert redact(text, ["connect"]) == f"{REDACTED} with {REDACTED} please"
