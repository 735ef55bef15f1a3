"""GitHub's own OpenAPI description of its REST API (``@octokit/openapi``, the npm package GitHub publishes
it in), for building and checking the fake server's responses.

    body = example("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")      # GitHub's example response
    validate("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 200, body)  # AssertionError if off-schema

Paths are the spec's templates (``/repos/{owner}/{repo}/issues/{issue_number}/comments``), methods any case,
statuses int or str. The description is OpenAPI 3.0.3; its schemas are turned into JSON Schema (draft 4, the
dialect OpenAPI 3.0 extends) before validating:

- ``nullable: true`` becomes ``"null"`` in ``type`` (and ``None`` in ``enum``), or ``anyOf [schema, null]``
  around ``allOf``/``anyOf``/``oneOf``;
- ``oneOf`` is checked as ``anyOf``: GitHub's alternatives overlap (``private-user`` is also a valid
  ``public-user``, every nullable branch accepts ``null``), so "exactly one" rejects real responses;
- siblings of ``$ref`` are dropped (OpenAPI 3.0 ignores them), as are ``discriminator``, ``example``,
  ``readOnly``/``writeOnly``, ``deprecated`` and ``x-*``;
- ``format`` is not checked;
- ``ERRATA`` replaces the few schemas that contradict what GitHub sends (each with its reason).

An error status the operation does not declare (e.g. a 401 or a 502) is checked against GitHub's
``basic-error`` schema.

The description is found at ``$CASM_GITHUB_OPENAPI``, else in ``<repo>/.cache/octokit-openapi-23.0.2/``; when
missing it is fetched there with ``npm pack @octokit/openapi@23.0.2`` (a ~29 MB tarball; only
``package/generated/api.github.com.json`` is kept). Without npm or the registry the calling test skips, or
fails under ``CI=true``.
"""

from __future__ import annotations

import copy
import fcntl
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
ENV_VAR = "CASM_GITHUB_OPENAPI"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / f"octokit-openapi-{VERSION}"
FETCH_COMMAND = f"npm pack {PACKAGE}@{VERSION} --silent"
_ERROR_SCHEMA_REF = "#/components/schemas/basic-error"


class SpecUnavailable(RuntimeError):
    """The description is not on disk and could not be fetched."""


def spec_path() -> Path:
    """The description's path: ``$CASM_GITHUB_OPENAPI``, else the repo's cache, fetching it there when missing.
    Skips the calling test when it cannot be had (fails it under ``CI=true``)."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            _unavailable(f"${ENV_VAR} is set to {override!r}, which is not a file")
        return path
    path = CACHE_DIR / "api.github.com.json"
    if path.is_file():
        return path
    try:
        return fetch(CACHE_DIR)
    except SpecUnavailable as exc:
        _unavailable(str(exc))
    raise AssertionError("unreachable")


def _unavailable(reason: str) -> None:
    message = f"GitHub's OpenAPI description is unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message} (run `{FETCH_COMMAND}` and extract {MEMBER}, or set ${ENV_VAR})")


def fetch(directory: Path, *, timeout: float = 300) -> Path:
    """Fetch the description into ``directory/api.github.com.json`` with npm (atomically, under a file lock
    so concurrent test processes fetch it once). Raises ``SpecUnavailable``."""
    target = directory / "api.github.com.json"
    npm = shutil.which("npm")
    if npm is None:
        raise SpecUnavailable("npm is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    # A cache, never a source file: keep it out of `git add -A` (as pytest does with .pytest_cache).
    ignore = directory.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by tests/github_fake/openapi.py\n*\n")
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.is_file():  # another process fetched it while we waited
                return target
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                try:
                    done = subprocess.run(
                        [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"],
                        cwd=tmp,
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                        stdin=subprocess.DEVNULL,
                    )
                except subprocess.TimeoutExpired:
                    raise SpecUnavailable(f"`{FETCH_COMMAND}` timed out after {timeout:.0f}s") from None
                if done.returncode != 0:
                    detail = (done.stderr or done.stdout).strip()[-500:]
                    raise SpecUnavailable(f"`{FETCH_COMMAND}` exited {done.returncode}: {detail}")
                tarballs = sorted(Path(tmp).glob("*.tgz"))
                if not tarballs:
                    raise SpecUnavailable(f"`{FETCH_COMMAND}` produced no tarball")
                partial = Path(tmp) / "api.github.com.json.partial"
                try:
                    with tarfile.open(tarballs[0], "r:gz") as tar:
                        source = tar.extractfile(MEMBER)
                        if source is None:
                            raise SpecUnavailable(f"{MEMBER} in {tarballs[0].name} is not a file")
                        with source, open(partial, "wb") as out:
                            shutil.copyfileobj(source, out)
                except (KeyError, tarfile.TarError) as exc:
                    raise SpecUnavailable(f"{tarballs[0].name} has no readable {MEMBER}: {exc}") from None
                json.loads(partial.read_bytes())  # a truncated download must not be cached
                os.replace(partial, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed description (read once per process)."""
    with open(spec_path(), "rb") as f:
        return json.load(f)


def _pointer(ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported: {ref}")
    node: Any = load_spec()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _deref(node: Any) -> Any:
    while isinstance(node, Mapping) and "$ref" in node:
        node = _pointer(node["$ref"])
    return node


def operation(method: str, path_template: str) -> dict[str, Any]:
    """The operation object for ``METHOD path``; ``KeyError`` naming the path when absent."""
    paths = load_spec()["paths"]
    if path_template not in paths:
        raise KeyError(f"the OpenAPI description has no path {path_template!r}")
    item = paths[path_template]
    if method.lower() not in item:
        raise KeyError(f"the OpenAPI description has no {method.upper()} {path_template}")
    return item[method.lower()]


def _response(method: str, path_template: str, status: int | str) -> dict[str, Any] | None:
    responses = operation(method, path_template)["responses"]
    response = responses.get(str(status))
    return _deref(response) if response is not None else None


def _json_content(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    content = response.get("content") or {}
    if "application/json" in content:
        return content["application/json"]
    for media_type, value in content.items():
        if media_type.endswith("json"):
            return value
    return None


def example(method: str, path_template: str, status: int | str = "200") -> Any:
    """A deep copy of GitHub's example response body for the operation (its first example)."""
    response = _response(method, path_template, status)
    if response is None:
        raise KeyError(f"{method.upper()} {path_template} declares no {status} response")
    media = _json_content(response)
    if media is None:
        raise KeyError(f"{method.upper()} {path_template} {status} has no JSON content")
    if "example" in media:
        return copy.deepcopy(media["example"])
    examples = media.get("examples") or {}
    if not examples:
        raise KeyError(f"{method.upper()} {path_template} {status} has no example")
    value: Any = _deref(examples.get("default") or next(iter(examples.values())))
    # An example object holds `value`, which may itself be a $ref to another example object.
    while isinstance(value, Mapping) and ("$ref" in value or _is_example_object(value)):
        value = _deref(value)
        if _is_example_object(value):
            value = value["value"]
    return copy.deepcopy(value)


def _is_example_object(node: Mapping[str, Any]) -> bool:
    keys = {k for k in node if not k.startswith("x-")}
    return "value" in node and keys <= {"summary", "description", "value", "externalValue"}


_DROPPED = {"nullable", "discriminator", "example", "examples", "readOnly", "writeOnly", "deprecated", "xml"}
_DROPPED |= {"externalDocs", "title", "description"}
_SCHEMA_MAPS = {"properties", "patternProperties"}
_SCHEMA_VALUES = {"items", "additionalProperties", "not"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}


def to_json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as a draft-4 JSON Schema (see the module doc for the rules)."""
    if not isinstance(schema, Mapping):
        return schema
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = to_json_schema(value)
        elif key in _SCHEMA_LISTS:
            converted = [to_json_schema(sub) for sub in value]
            target = "anyOf" if key == "oneOf" else key
            out[target] = out.get(target, []) + converted
        else:
            out[key] = value
    if schema.get("nullable") is True:
        if _SCHEMA_LISTS & out.keys():
            return {"anyOf": [out, {"type": "null"}]}
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


# Where GitHub's schema contradicts what GitHub sends (and its own other schemas): "components/schemas" path ->
# the schema used instead. Keep this short, and say why.
ERRATA: dict[str, dict[str, Any]] = {
    # A label's description is null until someone sets one (the `label` schema and `pull-request`'s labels say
    # nullable; `pull-request-simple`'s labels, i.e. GET /repos/{o}/{r}/pulls, forgot to).
    "pull-request-simple/properties/labels/items/properties/description": {"type": "string", "nullable": True},
}


@functools.cache
def _components() -> dict[str, Any]:
    schemas = copy.deepcopy(load_spec()["components"]["schemas"])
    for where, replacement in ERRATA.items():
        *parents, last = where.split("/")
        node = schemas
        for part in parents:
            node = node[part]
        node[last] = replacement
    return {"schemas": {name: to_json_schema(schema) for name, schema in schemas.items()}}


@functools.cache
def _validator(method: str, path_template: str, status: str) -> jsonschema.Draft4Validator | None:
    """The compiled validator for a response, or None when it has no JSON body to check."""
    response = _response(method, path_template, status)
    if response is None:
        if int(status) < 400:
            raise AssertionError(f"{method} {path_template} does not declare a {status} response")
        schema: Any = {"$ref": _ERROR_SCHEMA_REF}
    else:
        media = _json_content(response)
        if media is None or "schema" not in media:
            return None
        schema = to_json_schema(media["schema"])
    # The components ride along in the root document, so "#/components/schemas/..." resolves in it.
    root = {"allOf": [schema], "components": _components()}
    return jsonschema.Draft4Validator(root)


def validate(method: str, path_template: str, status: int | str, body: Any) -> None:
    """Raise ``AssertionError`` (listing what is wrong, where) unless ``body`` is a valid ``status`` response
    of ``METHOD path_template``. A response declared without content must have no body (``None``)."""
    method, status = method.upper(), str(status)
    validator = _validator(method, path_template, status)
    if validator is None:
        if body is not None:
            raise AssertionError(f"{method} {path_template} {status} declares no JSON body, got {_short(body)}")
        return
    errors = sorted(validator.iter_errors(body), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if not errors:
        return
    lines = [f"{method} {path_template} {status}: the body does not match GitHub's schema ({len(errors)} errors)"]
    for error in errors[:8]:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
        lines.append(f"  at {where}: {_leaf_message(error)}")
    if len(errors) > 8:
        lines.append(f"  ... and {len(errors) - 8} more")
    raise AssertionError("\n".join(lines))


def _leaf_message(error: jsonschema.ValidationError) -> str:
    """The most specific message: an anyOf failure names the problems of its closest alternative (the one
    with the fewest errors)."""
    if error.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else 0, []).append(sub)
        index, closest = min(branches.items(), key=lambda item: len(item[1]))
        problems = []
        for sub in closest[:3]:
            where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in sub.relative_path)
            problems.append(f"{where or '$'}: {_leaf_message(sub)}")
        return f"{_short(error.instance)} matches no alternative; closest (#{index}): " + "; ".join(problems)
    return error.message if len(error.message) < 300 else error.message[:300] + "..."


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
