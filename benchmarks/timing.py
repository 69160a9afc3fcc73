"""Thread settings and interleaved timing for the benchmarks.

``THREADS`` is the list every comparison runs at: one thread (the stable
figure on a shared machine) and torch's default. ``interleaved_medians`` times
several implementations in one process, round-robin (round r starts at
implementation r, so none always runs first), and returns each median: ratios
taken from it see the same machine load. At one thread it reads the process
CPU time (``time.process_time``: time spent while another job has the core
does not count, page faults do); with more threads, wall-clock time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

DEFAULT_THREADS = torch.get_num_threads()
THREADS = [1] if DEFAULT_THREADS == 1 else [1, DEFAULT_THREADS]


def threads_id(n: int) -> str:
    return f"threads={n}" + (" (default)" if n == DEFAULT_THREADS else "")


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def timer_for(threads: int) -> Callable[[], float]:
    return time.process_time if threads == 1 else time.perf_counter


def interleaved_medians(
    fns: dict[str, Callable[[], object]], rounds: int, threads: int
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin in this process."""
    timer = timer_for(threads)
    names = list(fns)
    with num_threads(threads):
        for f in fns.values():
            f()  # warm-up (and compilation)
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(rounds):
            for k in names[r % len(names):] + names[: r % len(names)]:
                t0 = timer()
                fns[k]()
                times[k].append(timer() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# Interleaved comparisons of this run, printed by conftest.py at the end:
# (title, threads, {impl: median seconds}, baseline impl, floor impl or None).
INTERLEAVED: list[tuple[str, int, dict[str, float], str, str | None]] = []


def record_interleaved(
    title: str, threads: int, medians: dict[str, float], baseline: str, floor: str | None
) -> None:
    INTERLEAVED.append((title, threads, medians, baseline, floor))
