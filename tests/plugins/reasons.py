"""Reason codes a module's source passes to given callables (for the contract tests)."""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

__all__ = ["reason_literals"]


def reason_literals(module: Any, calls: dict[str, int]) -> set[str]:
    """Reason codes passed to the given callables (name → position of the reason argument)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name not in calls:
            continue
        args = list(node.args)
        candidates = [args[calls[name]]] if len(args) > calls[name] else []
        candidates += [k.value for k in node.keywords if k.arg == "reason"]
        for arg in candidates:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and isinstance(arg.values[0], ast.Constant):
                found.add(str(arg.values[0].value))
    return {code for code in found if re.fullmatch(r"[a-z][a-z_]*(:[a-z_]*)?", code)}
