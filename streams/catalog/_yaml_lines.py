"""Load YAML into plain Python values and remember the line of every value's path."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["LineMap", "load_with_lines"]

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
