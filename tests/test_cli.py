"""python -m graceful_async and the graceful-async script, as subprocesses with real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .support.helpers import SIGINT_DEATH, WAIT, Backend, Child

SERVICE = """\
import anyio, graceful_async, sniffio, sys, asyncio

async def main():
    library = sniffio.current_async_library()
    loop = ""
    if library == "asyncio":
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    try:
        print("READY", library, loop, flush=True)
        await anyio.sleep_forever()
    finally:
        print("finally ran", flush=True)

async def slow_job():
    async with graceful_async.in_flight():
        print("READY", flush=True)
        await graceful_async.wait_shutdown_requested()  # the job is in flight at the signal
        await anyio.sleep(0.3)
        print("job finished", flush=True)

async def quick():
    print("quick ran", flush=True)

async def reloadable():
    graceful_async.on_reload(lambda: print("reloaded", flush=True))
    print("READY", flush=True)
    await anyio.sleep_forever()

async def delayed():
    print("READY", flush=True)
    while graceful_async.is_ready():
        await anyio.sleep(0.01)
    print("not ready; requested:", graceful_async.shutdown_requested(), flush=True)
    await graceful_async.wait_shutdown_requested()
    print("drain began", flush=True)

class NotAsync:
    pass

def sync_main():
    pass

config = {"handler": main}
"""

SCRIPT = Path(sys.executable).with_name("graceful-async")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding service.py, the working directory of every command."""
    (tmp_path / "service.py").write_text(SERVICE)
    (tmp_path / "broken.py").write_text("import a_module_that_does_not_exist\n")
    return tmp_path


def start(
    project: Path, *args: str, script: bool = False, env: dict[str, str] | None = None
) -> Child:
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "graceful_async"]
    environ = Backend("asyncio").env() | (env or {})
    return Child([*command, *args], environ, cwd=project)


def run(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = Backend("asyncio").env() | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "graceful_async", *args],
        env=environ,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


@pytest.mark.parametrize("script", [False, True], ids=["python -m", "console script"])
def test_runs_the_target_and_shuts_it_down(project: Path, script: bool) -> None:
    """SIGTERM: the target's finally runs, status 143, and the lifecycle is logged.

    The target is found in the working directory, also by the console script.
    """
    child = start(project, "service:main", script=script)
    child.wait_for("READY", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[-1] == "finally ran"
    assert "INFO graceful_async: SIGTERM received, shutting down (grace 8.0 s)" in result.stderr


def test_a_target_that_returns_exits_zero(project: Path) -> None:
    """A target that finishes by itself ends the command with status 0."""
    result = run(project, "service:quick")
    assert result.returncode == 0
    assert result.stdout == "quick ran\n"


def test_sigint_kills_by_sigint(project: Path) -> None:
    """Ctrl+C semantics survive the entry point: death by SIGINT, no traceback."""
    child = start(project, "service:main")
    child.wait_for("READY", partial=True)
    child.send(signal.SIGINT)
    result = child.finish()
    assert result.returncode == SIGINT_DEATH
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ([], {}, "READY asyncio asyncio"),
        (["--backend", "trio"], {}, "READY trio "),
        (["--uvloop"], {}, "READY asyncio uvloop"),
        ([], {"GRACEFUL_ASYNC_BACKEND": "trio"}, "READY trio "),
        ([], {"GRACEFUL_ASYNC_UVLOOP": "yes"}, "READY asyncio uvloop"),
        (["--backend", "asyncio"], {"GRACEFUL_ASYNC_BACKEND": "trio"}, "READY asyncio asyncio"),
        (["--backend", "trio"], {"GRACEFUL_ASYNC_UVLOOP": "1"}, "READY trio "),
        (["--uvloop"], {"GRACEFUL_ASYNC_BACKEND": "trio"}, "READY asyncio uvloop"),
    ],
)
def test_backend_from_flags_and_environment(
    project: Path, flags: list[str], env: dict[str, str], expected: str
) -> None:
    """--backend and --uvloop, or their environment variables; the flag wins."""
    child = start(project, *flags, "service:main", env=env)
    child.wait_for("READY", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.lines[0] == expected
    assert result.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("flags", "env", "fast_exit"),
    [
        ([], {}, False),
        (["--fast-exit"], {}, True),
        ([], {"GRACEFUL_ASYNC_FAST_EXIT": "yes"}, True),
        ([], {"GRACEFUL_ASYNC_FAST_EXIT": "0"}, False),
        (["--fast-exit"], {"GRACEFUL_ASYNC_FAST_EXIT": "0"}, True),
    ],
)
def test_fast_exit_from_flag_and_environment(
    project: Path, flags: list[str], env: dict[str, str], fast_exit: bool
) -> None:
    """--fast-exit or GRACEFUL_ASYNC_FAST_EXIT reaches run(); the flag wins."""
    child = start(project, *flags, "service:main", env=env)
    child.wait_for("READY", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert ("fast exit: freed the reference cycles" in result.stderr) is fast_exit


@pytest.mark.parametrize(
    ("flags", "env", "grace"),
    [
        (["--grace", "3"], {}, "3.0"),
        ([], {"GRACEFUL_ASYNC_GRACE": "4"}, "4.0"),
        (["--grace", "5"], {"GRACEFUL_ASYNC_GRACE": "4"}, "5.0"),
    ],
)
def test_grace_from_flag_and_environment(
    project: Path, flags: list[str], env: dict[str, str], grace: str
) -> None:
    """--grace or GRACEFUL_ASYNC_GRACE reaches run(); the flag wins."""
    child = start(project, *flags, "service:main", env=env)
    child.wait_for("READY", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    assert f"shutting down (grace {grace} s)" in result.stderr


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--drain", "0"], {}), ([], {"GRACEFUL_ASYNC_DRAIN": "0"})],
    ids=["flag", "environment"],
)
def test_drain_from_flag_and_environment(
    project: Path, flags: list[str], env: dict[str, str]
) -> None:
    """--drain 0 (or its variable) cancels the job in flight; by default it finishes."""
    child = start(project, *flags, "service:slow_job", env=env)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert "job finished" not in result.lines

    child = start(project, "service:slow_job")
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert "job finished" in result.lines


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--pre-drain-delay", "0.3"], {}), ([], {"GRACEFUL_ASYNC_PRE_DRAIN_DELAY": "0.3"})],
    ids=["flag", "environment"],
)
def test_pre_drain_delay_from_flag_and_environment(
    project: Path, flags: list[str], env: dict[str, str]
) -> None:
    """--pre-drain-delay (or its variable): not ready at once, the drain only after it."""
    child = start(project, *flags, "service:delayed", env=env)
    child.wait_for("READY")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert result.lines[-2:] == ["not ready; requested: False", "drain began"]
    assert "pre-drain delay (0.3 s)" in result.stderr


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--reload-signal", "hup", "--dump-signal", "SIGUSR1"], {}),
        (
            [],
            {"GRACEFUL_ASYNC_RELOAD_SIGNAL": "1", "GRACEFUL_ASYNC_DUMP_SIGNAL": "usr1"},
        ),
    ],
    ids=["flag", "environment"],
)
def test_reload_and_dump_signals_from_flag_and_environment(
    project: Path, flags: list[str], env: dict[str, str]
) -> None:
    """--reload-signal and --dump-signal (or their variables) take names or numbers."""
    child = start(project, *flags, "service:reloadable", env=env)
    child.wait_for("READY")
    child.send(signal.SIGHUP)
    child.wait_for("reloaded")
    child.send(signal.SIGUSR1)
    child.wait_for_stderr("report on request")
    child.send(signal.SIGTERM)
    result = child.finish()
    assert result.returncode == 128 + signal.SIGTERM
    assert "report on request" in result.stderr


@pytest.mark.parametrize(
    ("flags", "env", "shown", "hidden"),
    [
        ([], {}, "INFO graceful_async", "DEBUG"),
        (["--log-level", "warning"], {}, None, "INFO graceful_async"),
        ([], {"GRACEFUL_ASYNC_LOG_LEVEL": "WARNING"}, None, "INFO graceful_async"),
        (["--log-level", "INFO"], {"GRACEFUL_ASYNC_LOG_LEVEL": "ERROR"}, "INFO", None),
    ],
)
def test_log_level(
    project: Path, flags: list[str], env: dict[str, str], shown: str | None, hidden: str | None
) -> None:
    """--log-level (or its variable) sets the logging threshold; INFO by default."""
    child = start(project, *flags, "service:main", env=env)
    child.wait_for("READY", partial=True)
    child.send(signal.SIGTERM)
    result = child.finish()
    if shown:
        assert shown in result.stderr
    if hidden:
        assert hidden not in result.stderr


def test_log_level_applies_even_if_the_target_configures_logging(project: Path) -> None:
    """Our logging is set up before the import, so --log-level DEBUG is not lost."""
    (project / "loud.py").write_text(
        "import logging, anyio\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "log = logging.getLogger('loud')\n"
        "async def main():\n"
        "    log.debug('debug from the target')\n"
    )
    result = run(project, "--log-level", "DEBUG", "loud:main")
    assert result.returncode == 0
    assert "DEBUG loud: debug from the target" in result.stderr


def test_help_documents_every_option(project: Path) -> None:
    """--help names every option and every environment variable."""
    result = run(project, "--help")
    assert result.returncode == 0
    for word in (
        "MODULE:FUNCTION",
        "--grace",
        "--drain",
        "--backend",
        "--uvloop",
        "--log-level",
        "GRACEFUL_ASYNC_GRACE",
        "GRACEFUL_ASYNC_DRAIN",
        "--pre-drain-delay",
        "GRACEFUL_ASYNC_PRE_DRAIN_DELAY",
        "GRACEFUL_ASYNC_BACKEND",
        "GRACEFUL_ASYNC_UVLOOP",
        "GRACEFUL_ASYNC_LOG_LEVEL",
        "--reload-signal",
        "GRACEFUL_ASYNC_RELOAD_SIGNAL",
        "--dump-signal",
        "GRACEFUL_ASYNC_DUMP_SIGNAL",
        "--fast-exit",
        "GRACEFUL_ASYNC_FAST_EXIT",
        "Exit status",
    ):
        assert word in result.stdout, word


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["service"], {}, "the target must look like package.module:function, got 'service'"),
        (["nowhere.at_all:main"], {}, "cannot import 'nowhere.at_all': no module named 'nowhere'"),
        (["service:missing"], {}, "'service' has no attribute 'missing'"),
        (["service:config.nothing"], {}, "'service' has no attribute 'config.nothing'"),
        (["service:sync_main"], {}, "service:sync_main must be an async function"),
        (["service:NotAsync"], {}, "service:NotAsync must be an async function"),
        (["--grace", "-1", "service:main"], {}, "--grace must be a finite number of seconds >= 0"),
        (["--grace", "soon", "service:main"], {}, "expected a number of seconds, got 'soon'"),
        (
            ["--drain", "9", "service:main"],
            {},
            "--drain must be shorter than the grace period (8 s)",
        ),
        (
            ["--pre-drain-delay", "8", "service:main"],
            {},
            "--pre-drain-delay must be shorter than half the grace period (8 s)",
        ),
        (
            ["--pre-drain-delay", "3", "--drain", "5", "service:main"],
            {},
            "--drain must be shorter than the grace period (8 s) less the pre-drain delay",
        ),
        (["--uvloop", "--backend", "trio", "service:main"], {}, "--uvloop needs the asyncio"),
        (["--reload-signal", "NOPE", "service:main"], {}, "expected a signal name such as HUP"),
        (
            ["--reload-signal", "TERM", "service:main"],
            {},
            "--reload-signal must not be one of the shutdown signals, got SIGTERM",
        ),
        (
            ["service:main"],
            {"GRACEFUL_ASYNC_DUMP_SIGNAL": "sigfoo"},
            "GRACEFUL_ASYNC_DUMP_SIGNAL: expected a signal name",
        ),
        (
            ["service:main"],
            {"GRACEFUL_ASYNC_UVLOOP": "1", "GRACEFUL_ASYNC_BACKEND": "trio"},
            "GRACEFUL_ASYNC_UVLOOP needs the asyncio backend, but GRACEFUL_ASYNC_BACKEND is trio",
        ),
        (["service:main"], {"GRACEFUL_ASYNC_GRACE": "x"}, "GRACEFUL_ASYNC_GRACE must be a"),
        (["service:main"], {"GRACEFUL_ASYNC_BACKEND": "curio"}, "GRACEFUL_ASYNC_BACKEND must"),
        (["service:main"], {"GRACEFUL_ASYNC_UVLOOP": "maybe"}, "GRACEFUL_ASYNC_UVLOOP must"),
        (
            ["service:main"],
            {"GRACEFUL_ASYNC_FAST_EXIT": "soon"},
            "GRACEFUL_ASYNC_FAST_EXIT must be 1, true, yes, 0, false or no, got 'soon'",
        ),
        (["service:main"], {"GRACEFUL_ASYNC_LOG_LEVEL": "LOUD"}, "GRACEFUL_ASYNC_LOG_LEVEL must"),
        (["--backend", "curio", "service:main"], {}, "invalid choice: 'curio'"),
    ],
)
def test_bad_usage_is_one_line_and_status_2(
    project: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """A bad target or option: one clear line on stderr, status 2, no traceback."""
    result = run(project, *args, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    if message.startswith(("invalid choice", "expected a")):
        assert result.stderr.startswith("usage:")  # argparse's own, with the usage line
    else:
        assert result.stderr.count("\n") == 1


def test_a_module_that_fails_to_import_shows_its_traceback(project: Path) -> None:
    """An import error inside the target's own module is a bug in it: traceback, status 1."""
    result = run(project, "broken:main")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "No module named 'a_module_that_does_not_exist'" in result.stderr
