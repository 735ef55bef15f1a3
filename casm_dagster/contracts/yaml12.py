"""YAML for CASM's config files, read with YAML 1.2 core-schema scalars and no duplicate keys.

PyYAML implements YAML 1.1, where the manifest's ``on:`` key (routing.fallbacks) is the
boolean True, ``yes``/``no`` are booleans, ``010`` is octal 8 and ``15:00`` is the integer
900. Each of those would silently change a value; here they are what YAML 1.2 says
(or an error, for a duplicate key).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from casm_dagster.errors import ConfigError

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class Yaml12Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKeyError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 10)


Yaml12Loader.add_constructor(_INT, _construct_int)


# CASM's config files are a few KB. These bounds turn hostile ones into one clear error
# instead of a hang (a 200 MB file), a RecursionError (50,000 nested brackets) or a
# billion-laughs alias bomb whose expansion takes gigabytes once something walks it.
MAX_YAML_CHARS = 1_000_000
MAX_YAML_NODES = 100_000  # counted with every alias expanded
MAX_YAML_DEPTH = 64


class YamlLimitError(yaml.YAMLError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def load_yaml(text: str) -> Any:
    if len(text) > MAX_YAML_CHARS:
        raise YamlLimitError(f"{len(text):,} characters is more than a config file may hold ({MAX_YAML_CHARS:,})")
    loader = Yaml12Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(f"nested more than {MAX_YAML_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expanded_size(root: yaml.Node) -> None:
    """Nodes with aliases expanded (memoised per node, so a bomb is measured, not walked)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_YAML_DEPTH} levels deep")
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlLimitError("an alias refers to a node that contains it")
        total = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            active.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    raise YamlLimitError(
                        f"more than {MAX_YAML_NODES:,} values once aliases are expanded (an alias bomb?)"
                    )
            active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


M = TypeVar("M", bound=BaseModel)


def load_config(path: Path, model: type[M], what: str) -> tuple[M, bytes]:
    """Read, parse and strictly validate one of CASM's YAML config files; every failure is a
    ``ConfigError`` naming the file and the key path. Returns the model and the raw bytes
    (whose hash versions the file)."""
    raw = read_config_file(path, what)
    return parse_config(raw, model, str(path), what), raw


def read_config_file(path: Path, what: str) -> bytes:
    """A config file's bytes; one that is too large to be one is refused before it is read."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_CHARS * 4:  # 4 bytes per character at most in UTF-8
            raise ConfigError(f"{path}: {what} is {size:,} bytes: too large for a config file")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def parse_config(raw: bytes, model: type[M], where: str, what: str) -> M:
    """``load_config`` for bytes read elsewhere (e.g. a file at a commit); ``where`` names it."""
    try:
        data = load_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {what} is not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:8]
        )
        raise ConfigError(f"{where}: invalid {what}: {problems}") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line, column) and what, for a user-facing message."""
    mark = getattr(exc, "problem_mark", None)
    at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"not valid YAML{at}: {problem}"
