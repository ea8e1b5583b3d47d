"""Load YAML into plain Python values and remember the line of every value's path."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from foundation.errors import CatalogError

__all__ = ["LineMap", "load_with_lines", "read_yaml_file"]

Path = tuple[str | int, ...]
LineMap = dict[Path, int]


_scalars = yaml.constructor.SafeConstructor()


def load_with_lines(text: str) -> tuple[Any, LineMap]:
    """Parse text; return the data and a map from a value's path to its 1-based line."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: LineMap = {}
    if node is None:
        return None, lines
    return _convert(node, (), lines), lines


def read_yaml_file(
    path: pathlib.Path, *, what: str, error: type[CatalogError]
) -> tuple[Any, LineMap]:
    """Read and parse a configuration file; `error` (with file:line) when it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}", [f"{path}: {exc}"]) from exc
    try:
        return load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}"
        raise error(f"{what} {path} is not valid YAML", [problem]) from exc


def _convert(node: yaml.Node, path: Path, lines: LineMap) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalars.construct_object(key_node, deep=True)
            result[key] = _convert(value_node, (*path, str(key)), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, index), lines) for index, item in enumerate(node.value)]
    return _scalars.construct_object(node, deep=True)
