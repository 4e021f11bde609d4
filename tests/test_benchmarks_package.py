"""benchmarks/ is one package with one entry point, and no module of it imports in a cycle.

Nothing is measured here: ``python -m benchmarks`` runs only to print its help.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
from benchmarks import _bench_contenders, _bench_measure, overhead

from .support.helpers import WAIT

PACKAGE = Path(benchmarks.__file__).parent
ROOT = PACKAGE.parent
#: The bench dependency group's packages, which `make test` does not install.
BENCH_ONLY = {"aiomisc", "aiorun", "matplotlib"}


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package under ``package``, by its dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Which of the package's modules each one imports, wherever in it the import stands.

    Every import counts, at the top of the module or inside a function: a suite that
    imported the runner only in its ``__main__`` block still made a cycle.
    """
    modules = module_names(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                # `from . import x` imports the module x; `from .x import y`, the module x.
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as the modules along it (the first again at the end), or None."""
    finished: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in finished:
            return None
        for imported in sorted(graph[name]):
            if cycle := visit(imported, [*path, name]):
                return cycle
        finished.add(name)
        return None

    for name in sorted(graph):
        if cycle := visit(name, []):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(module_names(PACKAGE)))
def test_every_module_imports(name: str) -> None:
    """Each module imports as part of the package; only the bench group may be missing."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in BENCH_ONLY:
            raise
        pytest.skip(f"{exc.name} is installed by the bench dependency group only")


def test_no_module_imports_in_a_cycle() -> None:
    """The walk over the package's imports finds no cycle."""
    graph = import_graph(PACKAGE)
    assert "benchmarks.run" in graph["benchmarks.__main__"]  # the walk sees the imports
    assert find_cycle(graph) is None


def test_the_walk_finds_a_cycle(tmp_path: Path) -> None:
    """A cycle through an import inside a function, as benchmarks/ had, fails the check."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "runner.py").write_text("from . import suite\nfrom .helpers import thing\n")
    (package / "suite.py").write_text("def main():\n    from .runner import main\n")
    (package / "helpers.py").write_text("thing = 1\n")
    graph = import_graph(package)
    assert graph["pkg.runner"] == {"pkg", "pkg.suite", "pkg.helpers"}
    assert find_cycle(graph) == ["pkg.runner", "pkg.suite", "pkg.runner"]


def test_every_child_program_is_a_module_of_the_package() -> None:
    """The programs the suites start with ``python -m`` exist under those names."""
    children = {contender.child for contender in _bench_contenders.CONTENDERS}
    children |= {_bench_measure.INPROCESS_CHILD, overhead.CHILD}
    for child in sorted(children):
        module = f"{_bench_contenders.PACKAGE}.{child}"
        assert importlib.util.find_spec(module) is not None, module


@pytest.mark.parametrize("command", [[], ["run"], ["behaviour"], ["gc-repro"]])
def test_the_entry_point_prints_its_help(command: list[str]) -> None:
    """``python -m benchmarks [COMMAND] --help`` answers, and names every command."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m benchmarks {' '.join(command)}".rstrip())
    if not command:
        for name in ("run", "behaviour", "gc-repro"):
            assert re.search(rf"^ +{name}\b", done.stdout, re.MULTILINE), name
