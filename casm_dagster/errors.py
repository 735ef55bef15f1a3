"""One exception hierarchy for everything a user can get wrong.

The CLI maps every ``CasmError`` to a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class CasmError(Exception):
    """A user-facing error: the message names the file/key/value and what was expected."""

    exit_code = 2


class RepoError(CasmError):
    """The target repository is missing, not a git repository, or unusable."""


class TemplateError(CasmError):
    """An unknown template or a malformed template manifest."""


class ConfigError(CasmError):
    """A malformed configuration value (CLI option, environment variable, config file)."""


class RunNotFoundError(CasmError):
    """No persisted run with the given id."""


class SandboxError(CasmError):
    """A command was refused by the sandbox (not allowlisted, unsafe argv)."""


class RunFailedError(CasmError):
    """A run (or its continuation) started and failed: exit code 1, like ``casm run``."""

    exit_code = 1
