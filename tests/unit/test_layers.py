"""The package tree's layers and the no-patching rule, read from the source's syntax trees.

- the composition root `ioc` is imported by no other package;
- the base package `foundation` imports no component and not `ioc`;
- `alerts` imports no `streams`; `producers` and `consumers` do not import each other;
- a private module (`_name`) is imported only from inside its own package;
- nothing assigns to an attribute of a faust, mode, aiokafka, websockets, psycopg or
  prometheus_client object, reads or writes their underscore attributes, or sets
  attributes on objects with `setattr`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = "foundation"
COMPOSITION_ROOT = "ioc"
COMPONENTS = ("streams", "producers", "consumers", "alerts")
PACKAGES = (BASE, COMPOSITION_ROOT, *COMPONENTS)
THIRD_PARTY = frozenset(
    {"faust", "mode", "aiokafka", "websockets", "psycopg", "psycopg_pool", "prometheus_client"}
)


def _modules() -> Iterator[tuple[str, str, ast.Module]]:
    """(package, dotted module name, syntax tree) of every module of the packages."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield package, dotted, ast.parse(path.read_text(encoding="utf-8"), str(path))


MODULES = list(_modules())


def _imports(dotted: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import; `from m import n` yields m and m.n."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = dotted.split(".")[: -node.level]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _allowed(package: str, imported: str) -> bool:
    top = imported.split(".")[0]
    if top not in PACKAGES or top == package:
        return True
    if top == COMPOSITION_ROOT:
        return False  # nobody imports the composition root
    if package == BASE:
        return False  # the base imports no component
    if package == "alerts" and top == "streams":
        return False
    return {package, top} != {"producers", "consumers"}


def test_imports_follow_the_layers() -> None:
    """Only imports the layer rules allow appear in the packages."""
    broken = [
        f"{dotted}:{line} imports {imported}"
        for package, dotted, tree in MODULES
        for line, imported in _imports(dotted, tree)
        if not _allowed(package, imported)
    ]
    assert broken == []


def test_private_modules_are_imported_only_inside_their_package() -> None:
    """A `_module` is an implementation detail of the package that holds it."""
    broken = []
    for _package, dotted, tree in MODULES:
        for line, imported in _imports(dotted, tree):
            parts = imported.split(".")
            if parts[0] not in PACKAGES:
                continue
            # In `from a._m import n`, the last part is a name (may be private to the module).
            for i, part in enumerate(parts[:-1] if len(parts) > 1 else parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if not dotted.startswith(owner + "."):
                        broken.append(f"{dotted}:{line} imports {imported}")
                    break
    assert broken == []


def _third_party_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in THIRD_PARTY:
                    names.add((alias.asname or alias.name).split(".")[0])
        elif (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and node.module
            and node.module.split(".")[0] in THIRD_PARTY
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make"})  # public, underscored


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _targets(node: ast.AST) -> list[ast.expr]:
    """What an assignment statement assigns to (nothing for other nodes)."""
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    return []


def _inherited_privates(cls: ast.ClassDef) -> Iterator[tuple[int, str]]:
    """`self._x` read in a subclass of a library class that never sets it: the library's."""
    own: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(node.name):
            own.add(node.name)
        for target in _targets(node):
            if isinstance(target, ast.Attribute) and _root(target) == "self":
                own.add(target.attr)
            elif isinstance(target, ast.Name):
                own.add(target.id)
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr not in own
        ):
            yield node.lineno, f"uses the inherited private {ast.unparse(node)}"


def _patching(tree: ast.Module) -> Iterator[tuple[int, str]]:
    third = _third_party_names(tree)
    for node in ast.walk(tree):
        for target in _targets(node):
            if isinstance(target, ast.Attribute) and _root(target) in third:
                yield target.lineno, f"assigns {ast.unparse(target)}"
        # In a module that uses a library, another object's underscore attribute may be the
        # library's: only our own (`self`, `cls`) are ours to touch.
        if (
            third
            and isinstance(node, ast.Attribute)
            and _private(node.attr)
            and _root(node.value) not in ("self", "cls")
            and node.attr not in NAMEDTUPLE_API
        ):
            yield node.lineno, f"uses the private {ast.unparse(node)}"
        if isinstance(node, ast.ClassDef) and any(_root(base) in third for base in node.bases):
            yield from _inherited_privates(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "setattr":
                yield node.lineno, f"sets an attribute: {ast.unparse(node)}"
            if node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
                attribute = node.args[1]
                if (
                    isinstance(attribute, ast.Constant)
                    and isinstance(attribute.value, str)
                    and attribute.value.startswith("_")
                    and not attribute.value.startswith("__")
                ):
                    yield node.lineno, f"reads a private attribute: {ast.unparse(node)}"


def test_no_third_party_code_is_patched_or_read_privately() -> None:
    """No assignment to a library's attributes, no library underscore names, no setattr."""
    broken = [
        f"{dotted}:{line} {what}"
        for _package, dotted, tree in MODULES
        for line, what in _patching(tree)
    ]
    assert broken == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import faust\nfaust.App.send = None\n", "assigns faust.App.send"),
        ("from aiokafka import AIOKafkaConsumer as C\nC.f = 2\n", "assigns C.f"),
        (
            "import faust\nc = make()\nc._fetch_max_wait_ms = 1\n",
            "uses the private c._fetch_max_wait_ms",
        ),
        ("from faust import App\nx = App()._conf\n", "uses the private App()._conf"),
        ("setattr(app, 'x', 1)\n", "sets an attribute: setattr(app, 'x', 1)"),
        ("getattr(app, '_x', 1)\n", "reads a private attribute: getattr(app, '_x', 1)"),
        (
            "import faust\nclass S(faust.Stream):\n    def f(self):\n        return self._acked\n",
            "uses the inherited private self._acked",
        ),
    ],
)
def test_the_patching_rule_catches_what_it_must(source: str, expected: str) -> None:
    """The rule itself finds each kind of patching (so the test above can fail)."""
    assert [what for _line, what in _patching(ast.parse(source))] == [expected]


@pytest.mark.parametrize(
    ("package", "imported", "allowed"),
    [
        ("streams", "ioc.settings", False),
        ("foundation", "streams.worker", False),
        ("alerts", "streams.worker", False),
        ("producers", "consumers.history", False),
        ("consumers", "producers.sdk", False),
        ("ioc", "consumers.history", True),
        ("streams", "alerts.engine", True),
        ("consumers", "foundation.settings", True),
    ],
)
def test_the_layer_rule_catches_what_it_must(package: str, imported: str, allowed: bool) -> None:
    """The layer rule itself refuses each forbidden direction."""
    assert _allowed(package, imported) is allowed
