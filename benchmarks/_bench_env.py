"""Where the numbers come from: the machine, and the exact graceful_async measured."""

from __future__ import annotations

import compileall
import hashlib
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ._bench_contenders import HERE, PACKAGE, PYTHON, Envs


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def snapshot_source(into: Path) -> dict[str, Any]:
    """Copy the importable graceful_async into ``into`` and describe what was copied.

    The children import the copy (through PYTHONPATH), so that edits to the working tree
    during a run cannot mix two versions of the library into one median. Returns the
    copy's hash and, when the original lives in a git checkout, its commit and whether
    the package differed from that commit (then also the diff, and the text of the files
    that git does not track).
    """
    package = _importable_package()
    copy = into / "graceful_async"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # Compile now, so that the first child does not pay for it in a measured sample.
    compileall.compile_dir(copy, quiet=1)
    info: dict[str, Any] = {"copied_from": str(package), "sha256": _source_hash(copy)}
    git = ["git", "-C", str(package)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, check=True)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, check=True
        )
        diff = subprocess.run([*git, "diff", "HEAD", "--", "."], capture_output=True, check=True)
        others = subprocess.run(
            [*git, "ls-files", "--others", "--exclude-standard", "-z", "--", "."],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return info
    # git diff leaves out files that git does not track yet: keep the copy's text of them.
    untracked = {
        name: (copy / name).read_text("utf-8", "replace")
        for name in sorted(others.stdout.decode().split("\0"))
        if name.endswith(".py") and (copy / name).is_file()
    }
    if _source_hash(package) != info["sha256"]:
        info["git_note"] = "the working tree changed while it was copied; git state unknown"
        return info
    info["git_commit"] = head.stdout.decode().strip()
    info["git_dirty"] = bool(status.stdout.strip())
    if info["git_dirty"]:
        # What was measured, if it is not a commit: enough to rebuild it from the commit.
        info["git_status"] = status.stdout.decode()
        info["git_diff"] = diff.stdout.decode("utf-8", "replace")
        info["git_untracked"] = untracked
    return info


def snapshot_baseline(rev: str, into: Path) -> dict[str, Any]:
    """Copy graceful_async as it was at the git revision ``rev`` into ``into``; describe it.

    The package comes from the git repository of the importable graceful_async, from the
    same path in it (src/graceful_async), through ``git archive``: neither the working
    tree nor the checked-out branch changes. Returns ``rev``, its commit and the copy's
    hash.
    """
    package = _importable_package()
    try:
        top = _git_output(["git", "-C", str(package), "rev-parse", "--show-toplevel"])
        prefix = _git_output(["git", "-C", str(package), "rev-parse", "--show-prefix"])
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(
            f"--baseline needs graceful_async in a git checkout, not {package}"
        ) from None
    # From the top: git archive run in a subdirectory would take paths as relative to it.
    git = ["git", "-C", top]
    try:
        commit = _git_output(
            [*git, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}"]
        )
    except subprocess.CalledProcessError:
        raise SystemExit(f"--baseline {rev}: not a commit of the repository at {top}") from None
    try:
        archive = subprocess.run(
            [*git, "archive", "--format=tar", f"{commit}:{prefix}"],
            capture_output=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError:
        raise SystemExit(f"--baseline {rev}: commit {commit[:12]} has no {prefix}") from None
    copy = into / "graceful_async"
    copy.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(copy, filter="data")
    compileall.compile_dir(copy, quiet=1)  # as for the working tree's copy
    return {
        "rev": rev,
        "git_commit": commit,
        "copied_from": f"git archive {commit}:{prefix}",
        "sha256": _source_hash(copy),
    }


def _importable_package() -> Path:
    spec = importlib.util.find_spec("graceful_async")
    if spec is None or spec.origin is None:
        raise SystemExit("graceful_async is not importable; install it first")
    return Path(spec.origin).parent


def _git_output(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, check=True)
    return done.stdout.decode().strip()


def _source_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_children_use(copy: Path, env: dict[str, str]) -> None:
    """Stop unless a child would import the copy (a package directory) and this package's
    child programs."""
    code = (
        f"import graceful_async, {PACKAGE}\n"
        "print(graceful_async.__file__)\n"
        f"print({PACKAGE}.__file__)"
    )
    found = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, check=False)
    if found.returncode != 0:
        stderr = found.stderr.decode("utf-8", "replace")[-1500:]
        raise SystemExit(f"a child could not import graceful_async or {PACKAGE}: {stderr}")
    library, package = found.stdout.decode().splitlines()
    if not Path(library).is_relative_to(copy):
        raise SystemExit(f"children would import {library}, not the copy in {copy}")
    if Path(package).resolve().parent != HERE:
        raise SystemExit(f"children would run the programs in {Path(package).parent}, not {HERE}")


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {
            name: _version(name)
            for name in (
                "graceful-async",
                "anyio",
                "trio",
                "uvloop",
                "aiorun",
                "aiomisc",
                "matplotlib",
            )
        },
        "perf_counter": time.get_clock_info("perf_counter").implementation,
        "loadavg_at_start": list(os.getloadavg()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@contextmanager
def snapshot_env(baseline: str | None = None) -> Iterator[tuple[dict[str, Any], Envs]]:
    """Copy the library aside and yield (its description, the environments that use it).

    Children import the copy, so an edit to src/ during a long run cannot mix versions.
    With ``baseline`` (a git revision), graceful_async as it was there is copied too, into
    a folder of its own, and described under the description's ``baseline``.
    """
    with tempfile.TemporaryDirectory(prefix="graceful-async-bench-") as snapshot:
        root = Path(snapshot)
        source = snapshot_source(root)
        envs = Envs(current=importing_from(root))
        check_children_use(root / "graceful_async", envs.current)
        if baseline is not None:
            source["baseline"] = snapshot_baseline(baseline, root / "baseline")
            baseline_env = importing_from(root / "baseline")
            check_children_use(root / "baseline" / "graceful_async", baseline_env)
            envs = replace(envs, baseline=baseline_env)
        yield source, envs


def importing_from(directory: Path) -> dict[str, str]:
    """This process's environment, with ``directory`` first on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(directory), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}
