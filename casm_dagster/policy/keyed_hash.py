"""Keyed hashes for evidence: HMAC-SHA256 with a per-installation key.

A plain sha256 of a hunk holding a weak secret (a short password) can be reversed by
guessing; an HMAC cannot without the key. The key lives in ``$CASM_POLICY_KEY_FILE`` or
``${XDG_CONFIG_HOME:-~/.config}/casm/policy.key`` (created on first use, mode 0600), so
hashes are stable on one installation and meaningless anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from casm_dagster.errors import ConfigError

_KEY_BYTES = 32


def key_path() -> Path:
    configured = os.environ.get("CASM_POLICY_KEY_FILE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "casm" / "policy.key"


def load_or_create_key(path: Path | None = None) -> bytes:
    path = path or key_path()
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the policy hash key {path}: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"{path}: the policy hash key must be hex") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: the policy hash key is too short ({len(key)} bytes; at least 16)")
    return key


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(_KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(path)  # another process created it first
    except OSError as exc:
        raise ConfigError(f"cannot create the policy hash key {path}: {exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    return key


class KeyedHasher:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def hexdigest(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()
