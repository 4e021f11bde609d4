"""The architecture holds: the core knows no feature, no private name crosses a module,
and every field of a run's state is in docs/explanation/architecture.md's tables."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from graceful_async._lifecycle import Lifecycle
from graceful_async._shutdown import ShutdownState

PACKAGE = Path(__file__).parents[1] / "src" / "graceful_async"
ARCHITECTURE = Path(__file__).parents[1] / "docs" / "explanation" / "architecture.md"

CORE = ("_shutdown", "_lifecycle", "_signals", "_watchdog", "_report", "_exit", "_backends")
FEATURES = (
    "_children",
    "_systemd",
    "_reload",
    "_workers",
    "_drain",
    "_hooks",
    "_scopes",
    "_runner",
    "_cli",
    "testing",
    "contrib",
)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imports_of(path: Path) -> list[tuple[str, str]]:
    """Every (module, name) this file imports from the package, wherever the import is
    (at the top, under TYPE_CHECKING or inside a function)."""
    package = module_name(path).split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            elif (node.module or "").startswith("graceful_async"):
                module = node.module.removeprefix("graceful_async").strip(".")  # type: ignore[union-attr]
            else:
                continue
            found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (alias.name.removeprefix("graceful_async").strip("."), "")
                for alias in node.names
                if alias.name.startswith("graceful_async.")
            ]
    return found


def is_module(module: str, name: str) -> bool:
    parts = [*module.split("."), name] if module else [name]
    where = PACKAGE.joinpath(*parts)
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_feature(module: str) -> None:
    """The core modules never name a feature: features attach to the lifecycle instead."""
    imported = {
        f"{source}.{name}".strip(".") if is_module(source, name) else source
        for source, name in imports_of(PACKAGE / f"{module}.py")
    }
    named = sorted(m for m in imported if m.split(".")[0] in FEATURES)
    assert named == [], f"{module} imports the feature module(s) {named}"


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    """A name with a leading underscore stays in its module (private modules may be
    imported; their private names may not)."""
    private = [
        f"{source}.{name}"
        for source, name in imports_of(path)
        if name.startswith("_") and not name.startswith("__") and not is_module(source, name)
    ]
    assert private == []


def documented_fields(owner: str) -> set[str]:
    rows = re.findall(rf"^\| `{owner}\.(\w+)` \|", ARCHITECTURE.read_text(), flags=re.M)
    assert rows, f"no table of {owner}'s fields in {ARCHITECTURE.name}"
    return set(rows)


def test_every_field_of_the_core_is_documented_with_its_writer() -> None:
    """The who-writes-what table lists exactly the core's fields: a new field, written by
    some thread, cannot slip in unexplained."""
    state = ShutdownState(grace=1)
    try:
        assert set(vars(state)) == documented_fields("ShutdownState")
        # The core is small: the trigger record, counters, deadlines, wakers, and a
        # few facts other threads write. Loop-only bookkeeping belongs to the lifecycle.
        assert len(vars(state)) <= 18
    finally:
        state.close()


def test_every_field_of_the_lifecycle_is_documented_with_its_writer() -> None:
    state = ShutdownState(grace=1)
    try:
        assert set(vars(Lifecycle(state))) == documented_fields("Lifecycle")
    finally:
        state.close()


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("_*.py")), ids=module_name)
def test_no_module_but_the_backends_branches_on_a_backends_name(path: Path) -> None:
    """Backend differences live in one object per backend, chosen once: no
    ``if backend == "trio"`` elsewhere. (contrib/ is left out: a server integration
    says which event loops its server runs on, as uvicorn's asyncio-only check does.)"""
    if path.name == "_backends.py":
        return
    branches = [
        f"line {node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare)
        and any(
            isinstance(side, ast.Constant) and side.value in ("asyncio", "trio")
            for side in (node.left, *node.comparators)
        )
    ]
    assert branches == []
