"""YAML that remembers where each value came from, so every error can say `file:line:col`.

ruamel.yaml's round-trip loader keeps line/column on every mapping and sequence;
we keep the loaded tree beside the plain data and look positions up by JSON path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from engine.errors import ConfigError
from engine.secret import secret

__all__ = ["YamlDoc", "load_yaml"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class YamlDoc:
    """A loaded YAML file: plain data (env interpolated) plus the positions of every node."""

    file: str
    data: Any
    tree: Any

    def position(self, path: list[str | int], *, key: bool = False) -> tuple[int | None, int | None]:
        """1-based (line, column) of the value at `path` (or of its key when `key` is true)."""
        node = self.tree
        line = col = None
        if isinstance(node, CommentedMap | CommentedSeq):
            line, col = node.lc.line + 1, node.lc.col + 1
        for i, step in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, CommentedMap) and step in node:
                pos = node.lc.key(step) if (key and last) else node.lc.value(step)
                line, col = pos[0] + 1, pos[1] + 1
                node = node[step]
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                pos = node.lc.item(step)
                line, col = pos[0] + 1, pos[1] + 1
                node = node[step]
            else:
                break
        return line, col

    def error(self, message: str, path: list[str | int], *, key: bool = False, field: str | None = None) -> ConfigError:
        line, col = self.position(path, key=key)
        dotted = field if field is not None else _dotted(path)
        return ConfigError(message, file=self.file, line=line, column=col, field=dotted or None)


def _dotted(path: list[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def load_yaml(path: Path, *, display: str | None = None, env: dict[str, str] | None = None) -> YamlDoc:
    """Load `path`, interpolating `${VAR}` and `${VAR:-default}` in string values.

    An undefined variable without a default is a ConfigError at its line: a secret
    that is missing must stop the engine, not become an empty password.
    """
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc.__class__.__name__}", file=name) from exc
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"invalid YAML: {exc.problem}",
            file=name,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    except ReaderError as exc:  # a control character: the reader says where, as an offset
        before = text[: exc.position]
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise ConfigError(f"invalid YAML: character #x{code:04x} is not allowed in YAML text",
                          file=name, line=before.count("\n") + 1,
                          column=exc.position - (before.rfind("\n") + 1) + 1) from exc
    doc = YamlDoc(name, None, tree)
    errors: list[ConfigError] = []
    data = _plain(tree, [], doc, env if env is not None else dict(os.environ), errors)
    if errors:
        raise errors[0] if len(errors) == 1 else _many(errors)
    return YamlDoc(name, data, tree)


def _many(errors: list[ConfigError]) -> ConfigError:
    from engine.errors import ConfigErrors

    return ConfigErrors(errors)


def _plain(node: Any, path: list[str | int], doc: YamlDoc, env: dict[str, str], errors: list[ConfigError]) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v, [*path, str(k)], doc, env, errors) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v, [*path, i], doc, env, errors) for i, v in enumerate(node)]
    if isinstance(node, str):
        return _interpolate(node, path, doc, env, errors)
    if node is None or isinstance(node, bool | int | float):
        return node
    return str(node)


def _interpolate(
    value: str, path: list[str | int], doc: YamlDoc, env: dict[str, str], errors: list[ConfigError]
) -> str:
    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        try:
            found = secret(name, env)
        except ConfigError as exc:
            errors.append(doc.error(exc.message, path))
            return ""
        if found:
            return found
        if default is not None:
            return default
        hint = f"write ${{{name}:-default}} for a default"
        errors.append(doc.error(f"environment variable {name} is not set ({hint})", path))
        return ""

    return _ENV.sub(repl, str(value))
