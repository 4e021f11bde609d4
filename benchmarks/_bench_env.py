"""Where the numbers come from: the machine, and the exact graceful_async measured."""

from __future__ import annotations

import compileall
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ._bench_contenders import HERE, PACKAGE, PYTHON


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
    spec = importlib.util.find_spec("graceful_async")
    if spec is None or spec.origin is None:
        raise SystemExit("graceful_async is not importable; install it first")
    package = Path(spec.origin).parent
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


def _source_hash(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_children_use(snapshot: Path, env: dict[str, str]) -> None:
    """Stop unless a child would import the copy, and this package's child programs."""
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
    if not Path(library).is_relative_to(snapshot):
        raise SystemExit(f"children would import {library}, not the copy in {snapshot}")
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
def snapshot_env() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Copy the library aside and yield (its description, an environment that uses it).

    Children import the copy, so an edit to src/ during a long run cannot mix versions.
    """
    with tempfile.TemporaryDirectory(prefix="graceful-async-bench-") as snapshot:
        source = snapshot_source(Path(snapshot))
        path = os.pathsep.join(p for p in (snapshot, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        check_children_use(Path(snapshot), env)
        yield source, env
