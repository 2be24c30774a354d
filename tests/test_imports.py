"""Imports point down the layers, and the package and the command line start cheaply."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import drdfl

SRC = Path(drdfl.__file__).resolve().parent
HEAVY = ("torch", "cvxpy", "cvxpylayers", "scipy", "pandas", "matplotlib")


def _loaded_after(code: str) -> set[str]:
    """Top-level names of the modules loaded by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the drdfl modules it imports at module level (``TYPE_CHECKING`` included)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [*tree.body, *(n for b in tree.body if isinstance(b, ast.If) for n in b.body)]
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    deps.add(sub if sub in modules else node.module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


#: the layers of docs/architecture.md, bottom first, with the modules each holds
LAYERS = {
    "leaves": (
        "drdfl._io",
        "drdfl._version",
        "drdfl.device",
        "drdfl.errors",
        "drdfl.records",
        "drdfl.schema",
        "drdfl.seeding",
    ),
    "data": ("drdfl.data",),
    "tasks": ("drdfl.tasks",),
    "models": ("drdfl.models",),
    "diffusion": ("drdfl.diffusion",),
    "methods": ("drdfl.methods",),
    "config": ("drdfl.config",),
    "artifacts": ("drdfl.artifacts",),
    "evaluation": ("drdfl.evaluation",),
    "serve": ("drdfl.serve",),
    "report": ("drdfl.report",),
    "runner": ("drdfl.runner",),
    "cli": ("drdfl.cli", "drdfl.__main__"),
}


def _layer(module: str) -> int:
    """The index in :data:`LAYERS` of ``module``'s layer (the package face: above all)."""
    for k, prefixes in enumerate(LAYERS.values()):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return k
    assert module == "drdfl", module
    return len(LAYERS)


def _every_import() -> list[tuple[str, str, int]]:
    """``(module, imported drdfl module, line)`` for every import anywhere in the package."""
    found = []
    for path in SRC.rglob("*.py"):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [(module, n, node.lineno) for n in names if n.split(".")[0] == "drdfl"]
    return found


def test_every_import_points_down_the_layers_of_the_architecture_picture() -> None:
    picture = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = picture.split("## Layers")[1].split("```")[1]
    drawn = re.findall(r"^  ([a-z]+) +drdfl/", block, flags=re.MULTILINE)
    assert drawn[::-1] == list(LAYERS)
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    assert all(_layer(m) < len(LAYERS) for m in modules - {"drdfl"})
    upward = [
        f"{module}:{line} imports {target}"
        for module, target, line in _every_import()
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles_between_modules() -> None:
    graph = _import_graph()
    assert "drdfl.diffusion.model" in graph  # the walk found the package
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_diffusion_modules_share_a_leaf_instead_of_each_other() -> None:
    graph = _import_graph()
    assert graph["drdfl.diffusion.transitions"] == set()
    assert not graph["drdfl.diffusion.samplers"] & {
        "drdfl.diffusion.model",
        "drdfl.diffusion.trajectory",
    }
    assert "drdfl.diffusion.model" not in graph["drdfl.diffusion.trajectory"]


def test_import_drdfl_loads_no_heavy_dependency() -> None:
    loaded = _loaded_after("import drdfl; assert drdfl.__version__")
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)
    above = ("drdfl.methods", "drdfl.runner", "drdfl.evaluation")
    assert not any(m.startswith(above) for m in loaded)


def test_public_names_load_on_first_use() -> None:
    loaded = _loaded_after(
        "import drdfl\n"
        "assert drdfl.Series.__module__ == 'drdfl.data.series'\n"
        "assert 'get_method' in dir(drdfl)"
    )
    assert "drdfl.data.series" in loaded
    assert "drdfl.methods" not in loaded
    for name in drdfl.__all__:
        assert getattr(drdfl, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = drdfl.nope  # type: ignore[attr-defined]


def test_the_convex_tasks_load_cvxpy_on_first_use() -> None:
    convex = {"cvxpy", "cvxpylayers"}
    loaded = _loaded_after(
        "from drdfl.tasks import get_task, task_from_dict\n"
        "task_from_dict(get_task('provisioning:paper-text').to_dict())\n"
        "task_from_dict(get_task('replicas:strict').to_dict())\n"
        "import drdfl.runner.unit, drdfl.methods.pto, drdfl.evaluation.suites"
    )
    assert not {m.split(".")[0] for m in loaded} & convex
    loaded = _loaded_after("from drdfl.tasks import get_task\nget_task('multislot')")
    assert convex <= {m.split(".")[0] for m in loaded}


def test_help_loads_no_heavy_dependency() -> None:
    loaded = _loaded_after(
        "from drdfl.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)
    assert "drdfl.cli.diffusion" not in loaded


@pytest.mark.parametrize(
    ("module", "above"),
    [
        ("drdfl.data", ("drdfl.methods", "drdfl.evaluation", "drdfl.runner", "drdfl.diffusion")),
        ("drdfl.data.paper", ("drdfl.methods", "drdfl.evaluation", "drdfl.runner")),
        ("drdfl.data.training", ("drdfl.methods", "drdfl.evaluation", "drdfl.tasks")),
        ("drdfl.data.suites", ("drdfl.methods", "drdfl.evaluation", "drdfl.tasks")),
        ("drdfl.tasks", ("drdfl.data", "drdfl.methods", "drdfl.evaluation", "drdfl.models")),
        ("drdfl.diffusion", ("drdfl.methods", "drdfl.evaluation", "drdfl.runner")),
        ("drdfl.evaluation.suites", ("drdfl.methods", "drdfl.runner", "drdfl.diffusion")),
        ("drdfl.methods", ("drdfl.evaluation", "drdfl.runner", "drdfl.cli")),
        ("drdfl.evaluation.backtest", ("drdfl.methods", "drdfl.runner", "drdfl.serve")),
        ("drdfl.serve", ("drdfl.runner", "drdfl.report", "drdfl.cli", "fastapi", "uvicorn")),
        ("drdfl.serve.http", ("drdfl.runner", "drdfl.report", "drdfl.cli")),
    ],
)
def test_imports_point_down(module: str, above: tuple[str, ...]) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert sorted(m for m in loaded if m.startswith(above)) == []


def test_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from drdfl.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    listing = capsys.readouterr().out
    for name in COMMANDS:
        assert f"│ {name} " in listing
    assert "Train one forecaster with one method" in listing  # from train's docstring
    assert "Read, bin, describe and synthesise workload data." in listing


def test_a_mistyped_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from drdfl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2
    assert "Did you mean 'train'?" in capsys.readouterr().err


def test_the_report_loads_no_torch(tmp_path: Path) -> None:
    """A report reads files only: rendering one in a fresh interpreter loads neither torch
    nor cvxpy, and the method registry and its labels stay torch-free too."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.test_report import write_run\n"
        "from drdfl.report import summary_text, write_report\n"
        f"out = Path({str(tmp_path)!r})\n"
        "write_run(out)\n"
        "write_report(out)\n"
        "assert summary_text(out)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    loaded = set(done.stdout.split())
    assert {"drdfl.report.adversary", "drdfl.methods.labels", "drdfl.methods.registry"} <= loaded
    assert (tmp_path / "report.md").is_file()
    assert not {m.split(".")[0] for m in loaded} & {"torch", "cvxpy", "cvxpylayers"}
