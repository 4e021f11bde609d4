"""Soak: stop the SQLite job-queue example at random moments, restart it, check every job.

    python -m tests.support.soak [--rounds 200] [--seed N] [--work 0.1] [--span 1.5]

Each round starts `examples/sqlite_jobs.py` as a real process, sends it SIGTERM or SIGINT
at a random moment, waits for it to exit, and checks the exit status and what the process
left in the database. Then the next round starts it again. At the end one more run works
the queue until it is empty, and the soak checks from the database and from the
processes' own logs that every job was done exactly once: no job lost, none done twice.

The moments come from a seeded random generator, and the seed is printed first, so
``--seed`` replays the same plan: the same backends, signals, delays and job counts. (The
child processes' own timing still varies from run to run.)

`make soak` runs the full form, 200 rounds; tests/end_to_end/test_soak.py runs a short one in the
normal test suite.
"""

from __future__ import annotations

import argparse
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from tempfile import TemporaryDirectory

from .helpers import BACKENDS, Backend, Child, Result

SQLITE_JOBS = Path(__file__).parents[2] / "examples" / "sqlite_jobs.py"
READY = "sqlite_jobs running as pid"
EMPTY = "no job queued"

# Where the first signal lands, as told by the lines the example logged before the
# "<signal> received" line (the log is written in the order things happened).
BEFORE_HANDLERS = "before the handlers"  # no "received" line: the interpreter's default action
SWALLOWED = "swallowed by Python's start-up"  # see Soak._stop_once; signalled again after READY
BEFORE_READY = "before READY"
IDLE = "idle (no job in hand)"
MID_JOB = "mid-job"
MOMENTS = (BEFORE_HANDLERS, SWALLOWED, BEFORE_READY, IDLE, MID_JOB)

# Where the second signal (sent in some rounds once the first one is acknowledged) lands.
IN_DRAIN = "in the drain"  # it cut the drain phase short
AFTER_DRAIN = "after the drain"  # acted on while main's tree unwound
AFTER_STOP = "after the stop"  # run() was ending or had ended: no "second signal" line
SECONDS = (IN_DRAIN, AFTER_DRAIN, AFTER_STOP)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
COVERAGE_VARIABLES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")
EARLY_SHARE = 0.2  # the share of rounds whose signal comes during start-up
STARTUP = 0.2  # seconds from start to READY, until the soak has measured it
TWICE_SHARE = 0.2  # the share of the other rounds that send a second signal too
BACKLOG = 80  # each round tops the queue up to a random number of jobs up to this
# A child still running this long after an early signal did not get it. Generous: it
# normally ends well within a second.
UNHEARD_AFTER = 10.0


class SoakFailure(AssertionError):
    """Raised when a round or the final check finds something that must not happen."""


@dataclass(frozen=True)
class Plan:
    """What one round does, drawn from the seeded generator before it starts."""

    backend: Backend
    signum: signal.Signals
    # An early signal comes `delay` times the start-up time after the start; any other
    # comes `delay` s after READY.
    early: bool
    delay: float
    second: float | None  # signal again this long after the first is acknowledged
    backlog: int  # queued jobs to top the queue up to before the start

    def describe(self, startup: float) -> str:
        when = f"start+{self.delay * startup:.3f}s" if self.early else f"READY+{self.delay:.3f}s"
        twice = "" if self.second is None else f", again after {self.second:.3f}s"
        return f"{self.backend.id} {self.signum.name} at {when}{twice}"


def plans(rng: random.Random, span: float, work: float) -> Iterator[Plan]:
    """Endless plans: each block of six covers every backend with both signals, shuffled."""
    while True:
        block = [(backend, signum) for backend in BACKENDS for signum in SIGNALS]
        rng.shuffle(block)
        for backend, signum in block:
            early = rng.random() < EARLY_SHARE
            delay = rng.uniform(0, 1 if early else span)
            twice = not early and rng.random() < TWICE_SHARE
            yield Plan(
                backend,
                signum,
                early,
                delay,
                rng.uniform(0, work) if twice else None,
                rng.randint(0, BACKLOG),
            )


def jobs_in(lines: list[str], verb: str) -> list[int]:
    """The ids of the jobs in lines '<worker> <verb> job <id>...'."""
    found = [re.search(rf"worker-\d+ {verb} job (\d+)", line) for line in lines]
    return [int(match[1]) for match in found if match]


@dataclass
class Snapshot:
    """The database as the example left it."""

    states: dict[int, str]
    attempts: dict[int, int]
    results: Counter[int]  # job id -> result rows

    @classmethod
    def read(cls, db: Path) -> Snapshot:
        if not db.exists():  # no run has opened it yet
            return cls({}, {}, Counter())
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT id, state, attempts FROM jobs").fetchall()
            results = Counter(job for (job,) in conn.execute("SELECT job_id FROM results"))
        return cls(
            {job: state for job, state, _ in rows},
            {job: attempts for job, _, attempts in rows},
            results,
        )

    def count(self, state: str) -> int:
        return sum(s == state for s in self.states.values())


@dataclass
class Round:
    """What one round's process did, read from its log."""

    plan: Plan
    result: Result
    moment: str
    in_hand: int  # jobs claimed and not yet done or released when the signal came
    second: str | None
    claimed: list[int]
    done: list[int]
    released: list[int]
    drained: int  # jobs done after the signal: the ones in hand, finished in the drain
    seeded: int

    @classmethod
    def read(cls, plan: Plan, result: Result, *, swallowed: bool = False) -> Round:
        lines = result.lines
        at = next(
            (i for i, line in enumerate(lines) if f"{plan.signum.name} received" in line), None
        )
        before = lines if at is None else lines[:at]
        in_hand = (
            len(jobs_in(before, "claimed"))
            - len(jobs_in(before, "done"))
            - len(jobs_in(before, "released"))
        )
        if swallowed:
            moment = SWALLOWED
        elif at is None:
            moment = BEFORE_HANDLERS
        elif not any(READY in line for line in before):
            moment = BEFORE_READY
        else:
            moment = MID_JOB if in_hand else IDLE
        second = None
        if plan.second is not None:
            if "cut off by a second signal" in result.stdout:
                second = IN_DRAIN
            elif "second signal: " in result.stdout:
                second = AFTER_DRAIN
            else:
                second = AFTER_STOP
        seeded = re.search(r"seeded (\d+) new job", result.stdout)
        return cls(
            plan,
            result,
            moment,
            in_hand,
            second,
            jobs_in(lines, "claimed"),
            jobs_in(lines, "done"),
            jobs_in(lines, "released"),
            len(jobs_in([] if at is None else lines[at:], "done")),
            int(seeded[1]) if seeded else 0,
        )

    def expected_statuses(self) -> set[int]:
        """The truthful exit statuses for this round, as subprocess reports them."""
        if self.plan.signum == signal.SIGINT:
            if self.moment == BEFORE_HANDLERS:
                # CPython's own: death by SIGINT, or status 1 for a KeyboardInterrupt
                # while the interpreter itself starts up (importing site, say).
                return {-signal.SIGINT, 1}
            return {-signal.SIGINT}  # as a shell expects of Ctrl+C
        if self.moment == BEFORE_HANDLERS:
            return {-signal.SIGTERM}  # SIGTERM's default action: the process had not begun
        if self.second == AFTER_STOP and "shutdown complete" in self.result.stdout:
            # run() had put the default handler back; the second SIGTERM ended the
            # interpreter's exit a little early, by its default action.
            return {128 + signal.SIGTERM, -signal.SIGTERM}
        return {128 + signal.SIGTERM}

    def problems(self, after: Snapshot) -> list[str]:
        """Everything wrong with this round; empty if it stopped as it should."""
        found = []
        result = self.result
        if result.returncode not in self.expected_statuses():
            found.append(
                f"exit status {result.returncode}, expected one of {self.expected_statuses()}"
            )
        # Nothing on stderr, but in two cases outside run()'s reach: Python's own
        # KeyboardInterrupt traceback for a SIGINT before the handlers are in place, and
        # whatever a second signal does once run() has put the previous handlers back
        # (Python's default SIGINT handler raises KeyboardInterrupt wherever it lands).
        quiet = (
            result.stderr == ""
            or self.second == AFTER_STOP
            or self.moment == SWALLOWED  # checked above
            or (self.moment == BEFORE_HANDLERS and result.stderr.endswith("KeyboardInterrupt\n"))
        )
        if not quiet:
            found.append("unexpected stderr")
        if self.moment == BEFORE_HANDLERS and any(" sqlite_jobs " in line for line in result.lines):
            found.append("the example ran, yet no signal was received")
        if self.moment == SWALLOWED and not (
            self.plan.signum == signal.SIGINT
            and "Exception ignored" in result.stderr
            and "KeyboardInterrupt" in result.stderr
        ):
            found.append("the first signal was lost, and not by Python's start-up")
        if sorted(self.claimed) != sorted(self.done + self.released):
            found.append("a job claimed in this run was neither done nor released")
        # The summary is written in a cleanup_scope, which a second signal cuts off.
        summary = re.search(r" done \d+, queued \d+, running 0$", result.stdout, re.MULTILINE)
        if (
            self.moment in (SWALLOWED, IDLE, MID_JOB)
            and self.second in (None, AFTER_STOP)
            and not summary
        ):
            found.append("no closing summary with nothing running")
        if after.count("running"):
            found.append(f"{after.count('running')} job(s) left running")
        return found


@dataclass
class Soak:
    """Runs the rounds and the final run, keeping the counts."""

    db: Path
    seed: int
    work: float
    span: float
    say: Callable[[str], None] = print
    rounds: list[Round] = field(default_factory=list)
    # Seconds from the start to READY, per backend: trio, for one, starts up slower.
    startups: dict[str, list[float]] = field(default_factory=dict)
    final: Round | None = None
    elapsed: float = 0.0

    def run(self, rounds: int) -> Snapshot:
        """Run ``rounds`` stopped rounds and the final run; return the final database."""
        started = time.monotonic()
        rng = random.Random(self.seed)
        replay = f"--rounds {rounds} --seed {self.seed} --work {self.work} --span {self.span}"
        self.say(f"soak: seed {self.seed} (replay with: python -m tests.support.soak {replay})")
        for number, plan in enumerate(islice(plans(rng, self.span, self.work), rounds), 1):
            self.rounds.append(self._stop_once(number, plan))
        self.final = self._run_to_empty(rounds + 1)
        self.elapsed = time.monotonic() - started
        return self._check_exactly_once()

    def _start(self, backend: Backend, seed: int) -> Child:
        argv = [sys.executable, str(SQLITE_JOBS), "--db", str(self.db)]
        argv += ["--backend", backend.name, "--work", str(self.work), "--seed", str(seed)]
        if backend.options.get("use_uvloop"):
            argv.append("--uvloop")
        env = backend.env()
        # The example as users run it, not under coverage (`make test` measures child
        # processes): coverage's start-up .pth imports coverage inside a bare `except:`,
        # which swallows a SIGINT that lands then, and the child would never stop.
        for name in COVERAGE_VARIABLES:
            env.pop(name, None)
        return Child(argv, env)

    def _fail(self, number: int, what: str, result: Result | None = None) -> SoakFailure:
        tail = ""
        if result is not None:
            tail = "\n".join(
                ["", "stdout, the end:", *result.lines[-30:], "stderr:", result.stderr]
            )
        return SoakFailure(f"round {number} (seed {self.seed}): {what}{tail}")

    def startup(self, backend: Backend) -> float:
        """The backend's typical start-up time lately, to place early signals within it."""
        seen = self.startups.setdefault(backend.id, [])
        return statistics.median(seen[-12:]) if seen else STARTUP

    def _stop_once(self, number: int, plan: Plan) -> Round:
        before = Snapshot.read(self.db)
        # Top the queue up to the plan's backlog: now and then it runs dry, and the
        # workers sit idle waiting for jobs.
        topped_up = len(before.states) + max(0, plan.backlog - before.count("queued"))
        startup = self.startup(plan.backend)
        started = time.monotonic()
        child = self._start(plan.backend, topped_up)
        try:
            if plan.early:
                time.sleep(plan.delay * startup)
            else:
                child.wait_for(READY, partial=True)
                self.startups[plan.backend.id].append(time.monotonic() - started)
                time.sleep(plan.delay)
            child.send(plan.signum)
            swallowed = plan.early and not self._ends(child)
            if swallowed:
                # CPython itself can lose a SIGINT while it starts up: if the
                # KeyboardInterrupt is raised inside a weakref callback (say, one of the
                # import system's module locks), it is printed as "Exception ignored"
                # and the program carries on. Once READY is out, run()'s handlers are
                # in place: signal again, and check the loss in Round.problems().
                child.wait_for(READY, partial=True)
                child.send(plan.signum)
            if plan.second is not None:
                child.wait_for(f"{plan.signum.name} received", partial=True)
                time.sleep(plan.second)
                child.send(plan.signum)  # a zombie not yet waited for ignores it
            result = child.finish()
        except AssertionError as exc:
            raise self._fail(number, f"{plan.describe(startup)}: {exc}") from None
        stopped = Round.read(plan, result, swallowed=swallowed)
        if problems := stopped.problems(Snapshot.read(self.db)):
            raise self._fail(number, f"{plan.describe(startup)}: {'; '.join(problems)}", result)
        second = "" if stopped.second is None else f", second signal {stopped.second}"
        stderr = result.stderr.strip().splitlines()
        self.say(
            f"round {number:3}: {plan.describe(startup)}: {stopped.moment}{second}; "
            f"done {len(stopped.done)} ({stopped.drained} in the drain), "
            f"released {len(stopped.released)}, status {result.returncode}"
            + (f"; stderr: ...{stderr[-1]}" if stderr else "")
        )
        return stopped

    @staticmethod
    def _ends(child: Child) -> bool:
        """Whether the child ends within UNHEARD_AFTER seconds."""
        try:
            child.proc.wait(UNHEARD_AFTER)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _run_to_empty(self, number: int) -> Round:
        """One last run on the next backend: work until the queue is empty, then SIGTERM."""
        backend = BACKENDS[(number - 1) % len(BACKENDS)]
        plan = Plan(backend, signal.SIGTERM, False, 0.0, None, 0)
        child = self._start(backend, 0)
        try:
            child.wait_for(EMPTY, timeout=120, partial=True)
            child.send(signal.SIGTERM)
            result = child.finish()
        except AssertionError as exc:
            raise self._fail(number, f"the final run: {exc}") from None
        final = Round.read(plan, result)
        if problems := final.problems(Snapshot.read(self.db)):
            raise self._fail(number, f"the final run: {'; '.join(problems)}", result)
        self.say(f"final run: {backend.id}: done {len(final.done)}, status {result.returncode}")
        return final

    def _check_exactly_once(self) -> Snapshot:
        assert self.final is not None
        snapshot = Snapshot.read(self.db)
        every = [*self.rounds, self.final]
        total = sum(r.seeded for r in every)
        jobs = range(1, total + 1)
        logged = Counter(job for r in every for job in r.done)
        released = Counter(job for r in every for job in r.released)
        problems = []
        if sorted(snapshot.states) != list(jobs):
            problems.append(f"the table holds {len(snapshot.states)} jobs, {total} were seeded")
        if lost := [job for job in jobs if not snapshot.results[job]]:
            problems.append(f"{len(lost)} job(s) with no result: {lost[:20]}")
        if twice := [job for job in jobs if snapshot.results[job] > 1]:
            problems.append(f"{len(twice)} job(s) with more than one result: {twice[:20]}")
        if unfinished := [job for job in jobs if snapshot.states.get(job) != "done"]:
            problems.append(f"{len(unfinished)} job(s) not done: {unfinished[:20]}")
        if logged != Counter(jobs):
            problems.append("the logs do not show each job done once")
        # Every claim ended in "done" or in a release that the log shows: none went missing.
        if snapshot.attempts != {job: 1 + released[job] for job in jobs}:
            problems.append("a claim ended with neither 'done' nor a logged release")
        if f"done {total}, queued 0, running 0" not in self.final.result.stdout:
            problems.append("the final run's summary is not 'all done'")
        if problems:
            raise SoakFailure(f"seed {self.seed}: " + "; ".join(problems))
        return snapshot

    def report(self, snapshot: Snapshot) -> str:
        """The counts, as a small table."""
        assert self.final is not None
        rounds = self.rounds
        by = Counter((r.plan.backend.id, r.plan.signum.name) for r in rounds)
        moments = Counter(r.moment for r in rounds)
        seconds = Counter(r.second for r in rounds if r.second)
        statuses = Counter(r.result.returncode for r in rounds)
        late_stderr = sum(r.second == AFTER_STOP and r.result.stderr != "" for r in rounds)
        per_round = [len(r.done) for r in rounds]
        total = len(snapshot.states)
        duplicates = sum(n > 1 for n in snapshot.results.values())
        lost = sum(not snapshot.results[job] for job in snapshot.states)
        lines = [
            f"soak: {len(rounds)} rounds, seed {self.seed}, --work {self.work}, "
            f"{self.elapsed:.0f} s",
            f"{'backend':<23}{'SIGTERM':>8}{'SIGINT':>8}",
            *(f"{b.id:<23}{by[b.id, 'SIGTERM']:>8}{by[b.id, 'SIGINT']:>8}" for b in BACKENDS),
            "first signal landed:",
            *(row(f"  {moment}", moments[moment]) for moment in MOMENTS),
            row("second signal sent:", sum(seconds.values())),
            *(row(f"  {where}", seconds[where]) for where in SECONDS),
            row("    of which wrote to stderr", late_stderr),
            "exit statuses: " + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())),
            f"jobs done per round: min {min(per_round)}, median "
            f"{statistics.median(per_round):g}, max {max(per_round)}; "
            f"{sum(per_round)} in the rounds, {len(self.final.done)} in the final run",
            f"jobs in hand at the first signal: {sum(r.in_hand for r in rounds)}; "
            f"finished in the drain: {sum(r.drained for r in rounds)}; "
            f"released: {sum(len(r.released) for r in rounds)}",
            f"jobs: {total}, done exactly once: {total - duplicates - lost}, "
            f"duplicates: {duplicates}, lost: {lost}",
        ]
        return "\n".join(lines)


def row(label: str, count: int) -> str:
    return f"{label:<34}{count:>5}"


def soak(
    db: Path,
    rounds: int,
    seed: int,
    work: float = 0.1,
    span: float = 1.5,
    say: Callable[[str], None] = print,
) -> Soak:
    """Run the soak on the database ``db``; raise SoakFailure at the first thing wrong."""
    runner = Soak(db, seed, work, span, say)
    snapshot = runner.run(rounds)
    say(runner.report(snapshot))
    return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="stopped runs before the last")
    parser.add_argument("--seed", type=int, default=None, help="replay the plan of this seed")
    parser.add_argument("--work", type=float, default=0.1, help="mean seconds per job")
    parser.add_argument(
        "--span", type=float, default=1.5, help="seconds after READY the signal may wait"
    )
    options = parser.parse_args()
    seed = random.randrange(2**32) if options.seed is None else options.seed
    with TemporaryDirectory(prefix="soak-") as tmp:
        try:
            soak(Path(tmp) / "jobs.sqlite3", options.rounds, seed, options.work, options.span)
        except SoakFailure as exc:
            sys.exit(f"soak failed: {exc}")


if __name__ == "__main__":
    main()
