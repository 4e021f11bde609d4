"""benchmarks/ is one package with one entry point, and no module of it imports in a cycle.

Nothing is measured here: ``python -m benchmarks`` runs only to print its help.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import benchmarks
from benchmarks import (
    _bench_baseline,
    _bench_contenders,
    _bench_env,
    _bench_measure,
    latency,
    overhead,
    run,
)

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


# --- run --baseline REV: the twins, their environment and the comparison ----------------


def test_the_baseline_adds_a_twin_after_each_of_our_contenders() -> None:
    """Each graceful_async variant gets a twin "NAME @REV" right after it, the same child."""
    contenders = _bench_contenders.with_baseline(_bench_contenders.CONTENDERS, "abc1234")
    names = [c.name for c in contenders]
    expected = []
    for contender in _bench_contenders.CONTENDERS:
        expected.append(contender.name)
        if contender.name in _bench_contenders.OURS:
            expected.append(f"{contender.name} @abc1234")
    assert names == expected
    assert len(names) == len(_bench_contenders.CONTENDERS) + len(_bench_contenders.OURS)
    by_name = {c.name: c for c in contenders}
    for ours in _bench_contenders.OURS:
        twin = by_name[f"{ours} @abc1234"]
        assert twin.baseline_of == ours
        assert twin.original == ours
        assert (twin.command, twin.flags, twin.backends, twin.status) == (
            by_name[ours].command,
            by_name[ours].flags,
            by_name[ours].backends,
            by_name[ours].status,
        )
        assert by_name[ours].baseline_of is None


def test_the_baseline_option_reaches_the_settings() -> None:
    """``run --baseline REV`` is parsed into the settings; without it there is none."""
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    assert run.make_settings(parser.parse_args(["--quick", "--baseline", "abc1234"])).baseline == (
        "abc1234"
    )
    assert run.make_settings(parser.parse_args(["--quick"])).baseline is None


def test_each_contender_gets_the_environment_of_its_copy(tmp_path: Path) -> None:
    """A twin's environment puts the baseline's copy first on PYTHONPATH; the others, ours."""
    envs = _bench_contenders.Envs(
        current=_bench_env.importing_from(tmp_path / "current"),
        baseline=_bench_env.importing_from(tmp_path / "baseline"),
    )
    contenders = _bench_contenders.with_baseline(_bench_contenders.CONTENDERS, "abc1234")
    for contender in contenders:
        first = envs.of(contender)["PYTHONPATH"].split(os.pathsep)[0]
        copy = "current" if contender.baseline_of is None else "baseline"
        assert first == str(tmp_path / copy), contender.name
    twin = next(c for c in contenders if c.baseline_of)
    with pytest.raises(ValueError, match="needs the baseline's copy"):
        _bench_contenders.Envs(current=envs.current).of(twin)


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"not a git checkout: {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


def _imported_by_child(env: dict[str, str]) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", "import graceful_async; print(graceful_async.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return Path(done.stdout.strip())


def test_the_baseline_copy_is_the_revision_and_children_import_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """snapshot_env(REV) copies src/graceful_async as at REV, and a twin's child imports it."""
    commit = _git("rev-parse", "HEAD")
    monkeypatch.chdir(ROOT)  # where the children find the benchmarks package
    with _bench_env.snapshot_env("HEAD") as (source, envs):
        assert source["baseline"]["rev"] == "HEAD"
        assert source["baseline"]["git_commit"] == commit
        assert envs.baseline is not None
        copy = Path(envs.baseline["PYTHONPATH"].split(os.pathsep)[0]) / "graceful_async"
        assert (copy / "__init__.py").read_text("utf-8") == _git(
            "show", f"{commit}:src/graceful_async/__init__.py"
        ) + "\n"
        twin = next(
            c
            for c in _bench_contenders.with_baseline(_bench_contenders.CONTENDERS, "HEAD")
            if c.baseline_of
        )
        assert _imported_by_child(envs.of(twin)).is_relative_to(copy)
        current = _imported_by_child(envs.current)
        assert not current.is_relative_to(copy)
        assert current.parent.parent == copy.parent.parent  # the same snapshot folder


def test_an_unknown_baseline_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision that is no commit stops the run at once, and names it."""
    _git("rev-parse", "HEAD")
    monkeypatch.chdir(ROOT)
    with (
        pytest.raises(SystemExit, match="--baseline no-such-rev: not a commit"),
        _bench_env.snapshot_env("no-such-rev"),
    ):
        pytest.fail("the snapshot must not be made")


@pytest.mark.parametrize(
    ("current", "baseline", "expected"),
    [
        (1.0201, 1.0, "slower by more than 2%"),
        (1.02, 1.0, "within 2%"),
        (1.0, 1.0, "within 2%"),
        (0.98, 1.0, "within 2%"),
        (0.9799, 1.0, "faster by more than 2%"),
        (0.0, 0.0, "within 2%"),
        (0.001, 0.0, "slower by more than 2%"),
        (math.nan, 1.0, "n/a"),
    ],
)
def test_the_verdict_is_slower_exactly_above_the_limit(
    current: float, baseline: float, expected: str
) -> None:
    """The verdict is "slower by more than 2%" exactly when current/baseline > 1.02."""
    assert _bench_baseline.verdict(current, baseline) == expected


def test_the_report_compares_every_cell_with_its_baseline() -> None:
    """Made-up exit samples: a row per cell and variant, "slower" only where above 1.02."""
    contenders = _bench_contenders.with_baseline(_bench_contenders.CONTENDERS, "abc1234")
    timed = _bench_contenders.timed(contenders, {})
    # (contender, seconds, peak KiB) in one cell; the twins are faster than any alternative,
    # and the fast exit is 1% slower than its baseline, ours 3% slower and 3% larger.
    made_up = [
        ("graceful_async", 0.103, 103_000),
        ("graceful_async @abc1234", 0.100, 100_000),
        ("graceful_async, fast exit", 0.101, 100_000),
        ("graceful_async, fast exit @abc1234", 0.100, 100_000),
        ("anyio (bare)", 0.100, 100_000),
        ("asyncio.run", 0.200, 90_000),
    ]
    where = {"backend": "asyncio", "workload": "anyio", "tasks": 1_000}
    samples = [
        {**where, "contender": name, "rep": rep, "total": seconds, "maxrss_kib": kib}
        for name, seconds, kib in made_up
        for rep in range(3)
    ]
    rows = latency.summarize_cells(samples, timed, (1_000,))
    assert [row["fastest_alternative"] for row in rows] == ["asyncio.run"]  # not a twin
    results: dict[str, Any] = {
        "contenders": [dataclasses.asdict(c) for c in contenders],
        "exit_latency": {"summary": rows},
        "memory": latency.summarize_memory(rows),
    }
    twins = _bench_baseline.pairs(results["contenders"])
    assert twins == {
        "graceful_async": "graceful_async @abc1234",
        "graceful_async, fast exit": "graceful_async, fast exit @abc1234",
    }
    compared = latency.against_baseline(results, twins)
    verdicts = {(row["suite"], row["contender"]): row["verdict"] for row in compared}
    assert verdicts == {
        ("exit latency", "graceful_async"): "slower by more than 2%",
        ("exit latency", "graceful_async, fast exit"): "within 2%",
        ("peak memory", "graceful_async"): "larger by more than 2%",
        ("peak memory", "graceful_async, fast exit"): "within 2%",
    }
    lines = _bench_baseline.markdown(
        compared, {"rev": "abc1234", "git_commit": "abc1234" + "0" * 33}
    )
    assert "### Against the baseline" in lines
    body = [line for line in lines if line.startswith("| exit latency")]
    assert len(body) == 2
    assert "slower by more than 2%" in body[0]
    assert "| 103.0 ms | 100.0 ms | 1.030 |" in body[0]
    assert "slower" not in body[1]
    assert lines[-1].startswith("**2 of 4 cells are slower or larger")
