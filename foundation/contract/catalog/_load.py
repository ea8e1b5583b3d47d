"""Read a catalog file and turn every validation error into a `file:line: message` problem."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import ValidationError

from foundation.contract.catalog._model import Catalog, cross_check
from foundation.contract.catalog.yaml_lines import LineMap, read_yaml_file
from foundation.errors import CatalogError

__all__ = ["default_catalog_path", "load_catalog"]


def default_catalog_path() -> Path:
    """The catalog of Bình Phước's 11 sectors shipped with the package."""
    return Path(str(files("foundation.contract.catalog") / "binh_phuoc.yaml"))


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog; raise CatalogError listing every problem with file:line."""
    path = path or default_catalog_path()
    data, lines = read_yaml_file(path, what="catalog", error=CatalogError)
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(path, lines, error) for error in exc.errors()]
        raise CatalogError(f"catalog {path} has {len(problems)} problem(s)", problems) from exc
    cross = [
        f"{path}:{_line_of(lines, where)}: {_dotted(where)}: {message}"
        for where, message in cross_check(catalog)
    ]
    if cross:
        raise CatalogError(f"catalog {path} has {len(cross)} problem(s)", cross)
    return catalog


def _problem(path: Path, lines: LineMap, error: object) -> str:
    loc = tuple(error["loc"])  # type: ignore[index]
    message = str(error["msg"]).removeprefix("Value error, ")  # type: ignore[index]
    line = _line_of(lines, loc)
    return f"{path}:{line}: {_dotted(loc)}: {message}"


def _dotted(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top)"


def _line_of(lines: LineMap, loc: tuple[object, ...]) -> int:
    # The deepest path that exists in the file (a missing field points at its parent).
    for end in range(len(loc), -1, -1):
        key = tuple(part for part in loc[:end] if isinstance(part, str | int))
        if key in lines:
            return lines[key]
    return 1
