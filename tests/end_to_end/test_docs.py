"""Every code example in the docs and in the docstrings runs, and does what the text says.

Sybil finds the examples: the fenced blocks of README.md and docs/**/*.md, and those in the
docstrings of src/graceful_async (mkdocstrings renders them into the reference). Each
document is one test, whose examples run in order in one namespace, so that a block can use
what an earlier one defined; one test per document also keeps that order under xdist.

A Python block runs in one of three ways:

- as it is, in the test's process, when it runs by itself;
- as a real program in a child process, when an invisible block before it says so with
  ``docs.run_next(...)``: the test waits until ``run()`` is ready, sends the signals the
  text describes and checks the exit status (``result`` holds the output for the checks
  that follow);
- under a driver, for a fragment with a top-level ``await``: ``docs.await_next(driver)``.

Invisible blocks (``<!-- invisible-code-block: python ... -->``, an HTML comment that the
docs site does not render) define what a fragment assumes and check what the text claims.
A docstring cannot hold them without showing them in ``help()``, so the invisible blocks
for docstring examples live here, in ``DOCSTRING_DRIVERS``.

Non-Python blocks: YAML parses, each ``[Section]`` unit file line is a ``Key=value``,
a Dockerfile uses known instructions and valid exec-form JSON, bash passes ``bash -n``, and
SQL runs in SQLite. Console blocks show commands; the invisible block after them runs what
can run here.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import unittest
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from sybil import Document, Example, Sybil
from sybil.document import PythonDocStringDocument
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.typing import Parser

import graceful_async

from ..support.helpers import BACKENDS, WAIT, Backend, Child, Result

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().parents[1] / "support" / "docs_launcher.py"

# pymdownx.snippets: a line `--8<-- "path"` includes that file, relative to the repository.
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"\s*$', re.MULTILINE)


PROGRAM_RUNNERS = {"graceful_async.run", "asyncio.run", "anyio.run", "trio.run"}


def _top_level_run(source: str) -> bool:
    """Whether a block calls graceful_async.run() as a program does, at module level."""
    for node in ast.parse(source).body:
        body = node.body if isinstance(node, ast.If) else [node]
        for statement in body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Call)
                and ast.unparse(statement.value.func) in PROGRAM_RUNNERS
            ):
                return True
    return False


@dataclass
class Plan:
    """How the next Python block runs, if not as it is."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)


class Docs:
    """The helpers that invisible blocks reach as ``docs``."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.plan: Plan | None = None
        self.last_source = ""
        self.programs = 0
        self.visible = 0

    # -- what the next block is ---------------------------------------------------------

    def run_next(self, **options: Any) -> None:
        """Run the next block as a program; see `program` for the options."""
        self.plan = Plan("child", options)

    def await_next(self, driver: Callable[[Callable[[], Awaitable[None]]], Any]) -> None:
        """Run the next block, which awaits at top level, as ``driver(block)``."""
        self.plan = Plan("await", {"driver": driver})

    def compose_next(self, compose: Callable[[str], str]) -> None:
        """Run ``compose(next block)`` in-process instead of the block alone."""
        self.plan = Plan("compose", {"compose": compose})

    def quote_next(self, path: str) -> None:
        """The next block quotes ``path``: each line, but for ``...`` elisions, is in it."""
        self.plan = Plan("quote", {"path": path})

    def pytest_next(self, name: str, **options: Any) -> None:
        """Write the next block as the test file ``name``; see `run_pytest`."""
        self.plan = Plan("pytest", {"name": name, **options})

    # -- running ------------------------------------------------------------------------

    def program(
        self,
        source: str,
        *,
        send: tuple[int | float | tuple[int, str] | Callable[[Child], object], ...] = (
            signal.SIGTERM,
        ),
        status: int = 143,
        name: str = "program.py",
        args: tuple[str, ...] = (),
        module: str | None = None,
        setup: str = "",
        files: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        backend: Backend | None = None,
        ready: str = "run",
        timeout: float = WAIT,
    ) -> Result:
        """Run ``source`` as ``python name args`` (or ``python -m module args``) in a child.

        Once it is ready, send each signal in ``send`` (a ``(signal, line)`` pair waits
        for a stdout line containing ``line`` after the signal, a float waits that many
        seconds, and a callable is called with the `Child`, to talk to a server or wait
        for a line), then check the exit status. ``setup`` is run first, in the program's
        globals; ``files`` are written next to it.
        """
        self.programs += 1
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        for file_name, text in (files or {}).items():
            (self.tmp / file_name).parent.mkdir(parents=True, exist_ok=True)
            (self.tmp / file_name).write_text(textwrap.dedent(text))
        base = (backend or BACKENDS[0]).env()
        extra = dict(env or {})
        if setup:
            setup_path = self.tmp / f"_setup_{self.programs}.py"
            setup_path.write_text(textwrap.dedent(setup))
            extra["DOCS_SETUP"] = str(setup_path)
        if backend is not None:
            extra["DOCS_BACKEND"] = backend.name
            extra["DOCS_UVLOOP"] = "1" if backend.options.get("use_uvloop") else ""
        read_end, write_end = os.pipe()
        extra.update(DOCS_READY_FD=str(write_end), DOCS_READY=ready)
        target = ["-m", module] if module else [str(path)]
        try:
            child = Child(
                [sys.executable, str(LAUNCHER), *target, *args],
                {**base, **extra},
                cwd=self.tmp,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        try:
            if send:
                self._wait_ready(child, read_end)
            for step in send:
                if isinstance(step, float):
                    time.sleep(step)
                    continue
                if callable(step):
                    step(child)
                    continue
                sig, line = step if isinstance(step, tuple) else (step, None)
                child.send(sig)
                if line is not None:
                    child.wait_for(line, partial=True)
            result = child.finish(timeout)
        finally:
            os.close(read_end)
            child.kill()
        assert result.returncode == status, (
            f"exit status {result.returncode}, not {status}: {result}"
        )
        return result

    @staticmethod
    def _wait_ready(child: Child, read_end: int) -> None:
        readable, _, _ = select.select([read_end], [], [], WAIT)
        if not readable:
            child.kill()
            raise AssertionError(f"the program was not ready within {WAIT} s")
        if os.read(read_end, 1) != b"R":
            raise AssertionError(f"the program ended before it was ready: {child.finish()}")

    def run_pytest(
        self, *args: str, expect: str, status: int = 0, env: dict[str, str] | None = None
    ) -> str:
        """Run pytest on files in the temporary directory; check its summary line."""
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
            cwd=self.tmp,
            env={**BACKENDS[0].env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            check=False,
        )
        assert proc.returncode == status, proc.stdout + proc.stderr
        assert expect in proc.stdout, proc.stdout + proc.stderr
        return proc.stdout

    def run_main(
        self,
        main: Callable[..., Awaitable[Any]],
        *args: Any,
        after: float | Callable[[], Awaitable[Any]] = 0.2,
        send: int | None = None,
        status: int | None = 0,
        **run_kwargs: Any,
    ) -> int | None:
        """Run ``main`` with ``graceful_async.run()`` in this process, and stop it.

        After ``after`` seconds (or once ``after()`` returns), a real signal ``send`` goes
        to this process, or else ``request_shutdown()`` is called. Returns the exit status
        that run() gave: None if it returned, the SystemExit code otherwise.
        """

        async def trigger() -> None:
            if callable(after):
                await after()
            else:
                await anyio.sleep(after)
            if send is not None:
                os.kill(os.getpid(), send)
            else:
                graceful_async.request_shutdown("docs test")

        async def driven() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(trigger)
                await main(*args)
                tg.cancel_scope.cancel()

        code: int | None = None
        try:
            graceful_async.run(driven, **run_kwargs)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        assert code == status, f"run() ended with status {code}, not {status}"
        return code

    @contextlib.contextmanager
    def stdout(self) -> Iterator[io.StringIO]:
        """Capture what the block prints."""
        with contextlib.redirect_stdout(io.StringIO()) as out:
            yield out

    def bin(self, name: str, script: str) -> Path:
        """Put an executable ``name`` on PATH, for the child programs an example starts."""
        directory = self.tmp / "bin"
        directory.mkdir(exist_ok=True)
        path = directory / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
        path.chmod(0o755)
        if str(directory) not in os.environ["PATH"].split(os.pathsep):
            self.monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
        return path

    def readiness_steps(
        self, port: int, path: str = "/readyz"
    ) -> tuple[Callable[[Child], object] | int, ...]:
        """Steps for `program`: ``path`` answers 200, then SIGTERM, then 503.

        The program needs a pre-drain delay, during which it still answers.
        """
        import httpx

        url = f"http://127.0.0.1:{port}{path}"

        def ready(child: Child) -> None:
            answer = httpx.get(url, timeout=WAIT)
            assert (answer.status_code, answer.text) == (200, "ready\n"), answer

        def draining(child: Child) -> None:
            answer = httpx.get(url, timeout=WAIT)
            assert (answer.status_code, answer.text) == (503, "draining\n"), answer

        return (ready, signal.SIGTERM, draining)

    def free_port(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port


# -- evaluators --------------------------------------------------------------------------


def _source(example: Example) -> str:
    source = str(example.parsed)
    return SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(), source)


def evaluate_python(example: Example) -> None:
    namespace = example.namespace
    docs: Docs = namespace["docs"]
    source = _source(example)
    if example.region.lexemes.get("directive"):  # an invisible block: test code
        line = example.line + example.parsed.line_offset
        exec(compile(pad(source, line), example.path, "exec", dont_inherit=True), namespace)
        namespace.pop("__builtins__", None)
        return
    plan, docs.plan = docs.plan, None
    docs.last_source = source
    docs.visible += 1
    if plan is None or plan.kind in ("compose", "await"):
        _run_in_process(example, source, plan)
    elif plan.kind == "child":
        compose = plan.options.pop("compose", None)
        if compose is not None:
            source = compose(source)
        namespace["result"] = docs.program(source, **plan.options)
    elif plan.kind == "quote":
        _check_quote(source, plan.options["path"])
    elif plan.kind == "pytest":
        options = dict(plan.options)
        path = docs.tmp / options.pop("name")
        path.write_text(path.read_text() + source if path.exists() else source)
        if "expect" in options:
            namespace["result"] = docs.run_pytest(path.name, **options)
    else:  # pragma: no cover
        raise AssertionError(f"unknown plan {plan}")


def _run_in_process(example: Example, source: str, plan: Plan | None) -> None:
    namespace = example.namespace
    if plan is not None and plan.kind == "compose":
        source = plan.options["compose"](source)
    elif _top_level_run(source):
        raise AssertionError(
            "a complete program: say how to run it with docs.run_next(...) in an "
            "invisible block before it"
        )
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if plan is not None else 0
    line = example.line + example.parsed.line_offset
    code = compile(pad(source, line), example.path, "exec", flags=flags, dont_inherit=True)
    if plan is not None and plan.kind == "await":

        async def block() -> None:
            awaitable = eval(code, namespace)
            if awaitable is not None:
                await awaitable

        plan.options["driver"](block)
    else:
        exec(code, namespace)
    namespace.pop("__builtins__", None)


def _check_quote(source: str, path: str) -> None:
    text = (ROOT / path).read_text()
    # A string the file splits over lines ("..." "...") may be quoted in one piece.
    joined = re.sub(r'"\n\s*"', "", text)
    quoted = {line.strip() for line in text.splitlines() + joined.splitlines()}
    # So may a line, with a comment that the docs put at its end.
    quoted |= {line.split("  # ")[0] for line in quoted}
    for line in source.splitlines():
        if line.strip() and "..." not in line:
            code = line.strip() if line.strip() in quoted else line.split("  # ")[0].strip()
            assert code in quoted, f"not in {path}: {line!r}"


def check_yaml(example: Example) -> None:
    import yaml  # type: ignore[import-untyped]  # no stubs; only safe_load is used

    assert yaml.safe_load(str(example.parsed)) is not None


def check_unit(example: Example) -> None:
    """A systemd unit file: sections, and Key=value lines in them."""
    section = None
    for line in str(example.parsed).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            assert re.fullmatch(r"\[[A-Za-z]+\]", line), line
            section = line
        else:
            assert section is not None, f"{line!r} is outside a section"
            assert re.fullmatch(r"[A-Za-z]+=.*", line), f"not Key=value: {line!r}"


DOCKERFILE_INSTRUCTIONS = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "CMD", "ENTRYPOINT"}
DOCKERFILE_INSTRUCTIONS |= {"STOPSIGNAL", "HEALTHCHECK", "EXPOSE", "USER", "ARG", "LABEL"}


def check_dockerfile(example: Example) -> None:
    """Known instructions, and CMD/ENTRYPOINT in the exec form: a valid JSON list."""
    text = str(example.parsed).replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        assert instruction in DOCKERFILE_INSTRUCTIONS, f"unknown instruction: {line!r}"
        if instruction in ("CMD", "ENTRYPOINT") or (
            instruction == "HEALTHCHECK" and " CMD " in line
        ):
            form = rest.split(" CMD ", 1)[-1].strip() if instruction == "HEALTHCHECK" else rest
            command = json.loads(form)
            assert isinstance(command, list), line
            assert all(isinstance(part, str) for part in command), line
        if instruction == "STOPSIGNAL":
            assert getattr(signal, rest.strip()) in (signal.SIGTERM, signal.SIGINT), line


def check_bash(example: Example) -> None:
    proc = subprocess.run(
        ["bash", "-n"], input=str(example.parsed), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def run_sql(example: Example) -> None:
    """Run each SQL block, in order, on one in-memory database per document."""
    db = example.namespace.get("sql")
    if db is None:  # closed by test_examples when the document ends
        db = example.namespace["sql"] = sqlite3.connect(":memory:")
    statement = str(example.parsed)
    if "?" in statement:
        db.execute(statement, ("worker-1",) * statement.count("?")).fetchall()
    else:
        db.executescript(statement)


PARSERS: list[Parser] = [
    CodeBlockParser("python", evaluate_python),
    CodeBlockParser("yaml", check_yaml),
    CodeBlockParser("ini", check_unit),
    CodeBlockParser("dockerfile", check_dockerfile),
    CodeBlockParser("bash", check_bash),
    CodeBlockParser("sql", run_sql),
    SkipParser(),
]


class DocstringDocument(PythonDocStringDocument):
    """The docstrings of a source file, without importing it: examples use the public API."""

    def __init__(self, text: str, path: str) -> None:
        Document.__init__(self, text, path)


SYBIL = Sybil(PARSERS, document_types={".py": DocstringDocument})


def _documents() -> list[Path]:
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    paths += sorted((ROOT / "src" / "graceful_async").rglob("*.py"))
    return [path for path in paths if any(SYBIL.parse(path).examples())]


DOCUMENTS = _documents()


def _owner(document: Document, position: int) -> str:
    """The qualified name of the function or class whose docstring holds ``position``."""
    line = document.text.count("\n", 0, position) + 1
    module = Path(document.path).relative_to(ROOT / "src").with_suffix("")
    best, best_start = ".".join(module.parts), 0
    tree = ast.parse(document.text)

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal best, best_start
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}"
                end = child.end_lineno or child.lineno
                if child.lineno <= line <= end and child.lineno >= best_start:
                    best, best_start = name, child.lineno
                visit(child, name)

    visit(tree, best)
    return best


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(path.relative_to(ROOT)) for path in DOCUMENTS])
def test_examples(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example in the document runs, in order, and does what the text says."""
    document = SYBIL.parse(path)
    docs = Docs(tmp_path, monkeypatch)
    document.namespace["docs"] = docs
    docstrings = isinstance(document, DocstringDocument)
    try:
        _run_examples(path, document, docs, docstrings)
    finally:
        sql = document.namespace.get("sql")
        if sql is not None:
            sql.close()


def _run_examples(path: Path, document: Any, docs: Docs, docstrings: bool) -> None:
    for example in document.examples():
        where = f"{path.relative_to(ROOT)}, line {example.line}"
        driver = None
        if docstrings:
            owner = _owner(document, example.start)
            assert owner in DOCSTRING_DRIVERS, f"{where}: no driver for {owner}'s example"
            driver = DOCSTRING_DRIVERS[owner]
            exec(textwrap.dedent(driver.before), document.namespace)
        try:
            example.evaluate()
        except unittest.SkipTest:
            continue
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise AssertionError(f"the example at {where} failed: {exc!r}") from exc
        if driver is not None:
            exec(textwrap.dedent(driver.after), document.namespace)
    assert docs.plan is None, f"{path.relative_to(ROOT)}: a plan with no block after it"


@dataclass(frozen=True)
class Driver:
    """The invisible blocks of a docstring example: what it assumes, what it must do."""

    before: str
    after: str = ""


DOCSTRING_DRIVERS: dict[str, Driver] = {}

_SERVED_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def hello(request):
    return PlainTextResponse("hello\\n")

def make_app():
    return Starlette(routes=[Route("/hello", hello)])

main_app = make_app()
"""

_SERVE = """
import graceful_async
from graceful_async.contrib import uvicorn

async def main():
    await uvicorn.serve(app, host="127.0.0.1", port={port}, log_level="warning")

graceful_async.run(main, ready_on_start=False)
"""

# An example that makes `app`, served by Uvicorn on `port` with a 1 s pre-drain delay (set
# in the environment, as the examples leave it to): /readyz answers 200, /hello reaches
# the app, and after SIGTERM /readyz answers 503.
_SERVE_APP = f"""
docs.run_next(
    setup={_SERVED_APP!r},
    compose=lambda example: example + {_SERVE!r}.format(port=port),
    send=(hello, *docs.readiness_steps(port)),
    env=dict(GRACEFUL_ASYNC_PRE_DRAIN_DELAY="1"),
)
"""

_HTTP = """
import httpx

port = docs.free_port()

def hello(child):
    answer = httpx.get(f"http://127.0.0.1:{port}/hello")
    assert (answer.status_code, answer.text) == (200, "hello\\n"), answer
"""

_MIDDLEWARE = """
from graceful_async.contrib.asgi import ReadinessMiddleware
app = ReadinessMiddleware(main_app)
"""

# A complete server program from a docstring: on a free port, its `app` made by the setup.
_SERVER_PROGRAM = f"""
docs.run_next(
    setup={_SERVED_APP + _MIDDLEWARE!r},
    compose=lambda example: example.replace("8000", str(port)),
    send=(hello, *docs.readiness_steps(port)),
    env=dict(GRACEFUL_ASYNC_PRE_DRAIN_DELAY="1"),
)
"""

# Indented as the drivers' code is, to be dedented with it.
_IMPORTS = """
            import signal

            import anyio

            import graceful_async
"""

DOCSTRING_DRIVERS.update(
    {
        "graceful_async._children.start_child": Driver(
            before=_IMPORTS + '            docs.bin("envoy", "exit 3\\n")',
            # envoy exits by itself: main asks for a shutdown with status 1.
            after="docs.run_main(main, after=anyio.sleep_forever, status=1)",
        ),
        "graceful_async._drain.drain": Driver(
            before=_IMPORTS
            + """
            started, finished = [], []

            async def handle(job):
                started.append(job)
                await anyio.sleep(0.3)
                finished.append(job)

            send_jobs, jobs = anyio.create_memory_object_stream[int](10)
            for job in range(3):
                send_jobs.send_nowait(job)

            async def job_in_hand():
                while not started:
                    await anyio.sleep(0.01)

            docs.await_next(
                lambda block: docs.run_main(
                    block, after=job_in_hand, send=signal.SIGTERM, status=143
                )
            )
            """,
            # SIGTERM during job 0: it finishes, and no other job is taken.
            after="""
            send_jobs.close()
            jobs.close()
            assert (started, finished) == ([0], [0]), (started, finished)
            """,
        ),
        "graceful_async._hooks.on_shutdown": Driver(
            before=_IMPORTS
            + """
            closed = []

            class Database:
                async def close(self):
                    await anyio.sleep(0.01)
                    closed.append(True)

            async def connect():
                return Database()

            async def serve(db):
                await anyio.sleep_forever()
            """,
            after="""
            docs.run_main(main, send=signal.SIGTERM, status=143)
            assert closed == [True]
            """,
        ),
        "graceful_async._reload.on_reload": Driver(
            before=_IMPORTS
            + '''
            docs.run_next(
                setup="""
                import signal
                import anyio
                import graceful_async

                class Settings:
                    @classmethod
                    def load(cls):
                        return cls()

                    def reload(self):
                        print("reloaded", flush=True)

                async def serve(settings):
                    await anyio.sleep_forever()
                """,
                send=((signal.SIGHUP, "reloaded"), signal.SIGTERM),
            )
            ''',
            after='assert result.lines == ["reloaded"], result',
        ),
        "graceful_async._runner.run": Driver(
            before="""
            docs.run_next(setup="async def flush_buffers():\\n    print('flushed', flush=True)")
            """,
            after='assert result.lines == ["flushed"], result',
        ),
        "graceful_async._scopes.cleanup_scope": Driver(
            before=_IMPORTS
            + """
            said = []

            class Connection:
                async def send_goodbye(self):
                    await anyio.sleep(0.05)  # a cancelled task could not sleep
                    said.append("goodbye")

            conn = Connection()

            async def serve(conn):
                await anyio.sleep_forever()

            docs.await_next(lambda block: docs.run_main(block, send=signal.SIGTERM, status=143))
            """,
            after='assert said == ["goodbye"]',
        ),
        "graceful_async._scopes.in_flight": Driver(
            before=_IMPORTS
            + """
            done = []

            async def charge_card(request):
                await anyio.sleep(0.3)
                done.append("charged")

            async def send_receipt(request):
                await anyio.sleep(0.05)
                done.append("receipt sent")
            """,
            # SIGTERM while the card is charged: the receipt is still sent.
            after="""
            async def main():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(handle, "order 1")
                    await anyio.sleep_forever()

            docs.run_main(main, after=0.1, send=signal.SIGTERM, status=143)
            assert done == ["charged", "receipt sent"]
            """,
        ),
        "graceful_async._shutdown.request_shutdown": Driver(
            before=_IMPORTS
            + """
            def config_changed_in_an_incompatible_way():
                return True

            docs.await_next(
                lambda block: docs.run_main(block, after=anyio.sleep_forever, status=3)
            )
            """,
        ),
        # These two run as programs: whether a task that wakes up at the shutdown still
        # gets to await depends on the scheduling of a real run(), signal included.
        "graceful_async._shutdown.time_left": Driver(
            before="""
            import textwrap

            def in_main(block):
                return (
                    "import anyio\\nimport graceful_async\\n"
                    "async def flush_everything():\\n"
                    "    await anyio.sleep(0.05)\\n"
                    "    print('flushed', flush=True)\\n"
                    "async def main():\\n"
                    + textwrap.indent(block, "    ")
                    + "graceful_async.run(main)\\n"
                )

            docs.run_next(compose=in_main)
            """,
            after='assert result.lines == ["flushed"], result',
        ),
        "graceful_async._shutdown.wait_shutdown_requested": Driver(
            before="""
            import textwrap

            SETUP = '''
            import anyio
            import graceful_async

            class Peers:
                async def broadcast(self, message):
                    await anyio.sleep(0.05)
                    print(message, flush=True)
            '''
            MAIN = '''
            async def main():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(announce_leaving, Peers())
                    await anyio.sleep_forever()

            graceful_async.run(main)
            '''
            docs.run_next(
                setup=SETUP, compose=lambda block: block + textwrap.dedent(MAIN)
            )
            """,
            after='assert result.lines == ["leaving"], result',
        ),
        "graceful_async._shutdown.set_ready": Driver(
            before='''
            docs.run_next(
                setup="""
                import anyio
                import graceful_async

                async def warm_up_cache():
                    await anyio.sleep(0.2)
                    print("warm, ready:", graceful_async.is_ready(), flush=True)

                async def serve_forever():
                    print("serving, ready:", graceful_async.is_ready(), flush=True)
                    await anyio.sleep_forever()
                """
            )
            ''',
            after='assert result.lines == ["warm, ready: False", "serving, ready: True"], result',
        ),
        "graceful_async._shutdown.is_ready": Driver(
            before=_IMPORTS + "            from starlette.responses import PlainTextResponse",
            after="""
            async def main():
                answer = await readyz(None)
                assert (answer.status_code, answer.body) == (200, b"ok")
                graceful_async.request_shutdown("docs test")
                answer = await readyz(None)
                assert (answer.status_code, answer.body) == (503, b"draining")

            docs.run_main(main, after=anyio.sleep_forever, status=0)
            """,
        ),
        "graceful_async._workers.worker": Driver(
            before=_IMPORTS
            + """
            handled, failed = [], []

            async def handle(job):
                if job == 1 and not failed:
                    failed.append(job)
                    raise RuntimeError("job 1 failed")
                handled.append(job)
            """,
            # Job 1 fails once: the worker is restarted and carries on with job 2.
            after="""
            async def main():
                send, queue = anyio.create_memory_object_stream[int](10)
                for job in range(4):
                    send.send_nowait(job)
                send.close()
                with queue:
                    await consume(queue)

            docs.run_main(main, after=anyio.sleep_forever, status=None)
            assert (handled, failed) == ([0, 2, 3], [1]), (handled, failed)
            """,
        ),
        "graceful_async.testing": Driver(
            before="""
            (docs.tmp / "myservice.py").write_text(
                "import anyio, graceful_async\\n"
                "def flush_buffer():\\n"
                "    pass\\n"
                "async def main():\\n"
                "    graceful_async.on_shutdown(flush_buffer)\\n"
                "    await anyio.sleep_forever()\\n"
            )
            docs.pytest_next("test_myservice.py", expect=" passed")
            """,
        ),
        "graceful_async.contrib.asgi.readiness_app": Driver(before=_HTTP + _SERVE_APP),
        "graceful_async.contrib.asgi.ReadinessMiddleware": Driver(before=_HTTP + _SERVE_APP),
        "graceful_async.contrib.hypercorn.serve": Driver(before=_HTTP + _SERVER_PROGRAM),
        "graceful_async.contrib.uvicorn.serve": Driver(before=_HTTP + _SERVER_PROGRAM),
    }
)
