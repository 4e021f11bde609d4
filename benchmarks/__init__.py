"""graceful-async's benchmarks: run them with ``python -m benchmarks COMMAND`` (``__main__``).

The modules, by what they are:

- ``run``: every timing suite in one run; the suites are ``latency``, ``startup``, ``idle``
  and ``overhead``.
- ``behaviour``: how each runner behaves when a service is stopped (nothing is timed).
- ``gc_repro``: anyio's task-group garbage, reproduced with anyio alone. It imports nothing
  from this package, so the file alone can be pasted into an issue and run.
- ``_bench_*``: what the suites share: the contenders, the machine and the copy of
  graceful_async that is measured, the measurements, the report, the goals and the plot.
- ``_child_*``: the programs that the suites start as child processes, each as
  ``python -m benchmarks._child_...``; they import nothing of this package but
  ``_child_workloads``.

This file stays empty of imports: every child program runs it before its own code.
"""
