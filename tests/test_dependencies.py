"""What drdfl imports is what it declares: a fresh ``pip install -e .`` runs every command."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import drdfl

SRC = Path(drdfl.__file__).resolve().parent
ROOT = SRC.parent.parent
#: distributions an optional extra brings, and the only modules that may import them
OPTIONAL = {
    "ray": ("drdfl.runner.distributed",),
    "fastapi": ("drdfl.serve.http",),
    "uvicorn": ("drdfl.serve.http",),
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    return {_name(r) for r in project["dependencies"]}, extras


def _imports() -> dict[str, set[str]]:
    """Top-level third-party module → the drdfl modules that import it (anywhere)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "drdfl" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(module)
    return found


def test_every_imported_package_is_declared_and_every_declared_one_imported() -> None:
    required, extras = _declared()
    dists = packages_distributions()
    imported: dict[str, set[str]] = {}
    for top, users in _imports().items():
        names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
        for name in names:
            imported.setdefault(name, set()).update(users)
    undeclared = {
        name: sorted(users)
        for name, users in imported.items()
        if name not in required and not (name in extras and users <= set(OPTIONAL.get(name, ())))
    }
    assert undeclared == {}
    assert "click" not in imported  # typer no longer brings it
    unused = sorted(required - set(imported))
    assert unused == []
