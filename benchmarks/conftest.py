"""Benchmark session helpers: caches in the checkout, the allocator, and ratio tables.

Every benchmark sets ``benchmark.group`` (one problem size and thread count) and
``benchmark.extra_info["impl"]``; the implementation named ``facecore`` is the
baseline of its group, and one named ``copy floor`` (where a group has one) is
the memory-traffic floor. At the end of the run two tables print, all from
this one run:

* per pytest-benchmark group, each implementation's median time, its ratio to
  facecore (> 1: facecore is faster), its speed relative to the floor
  (floor time / its time: 1 = at the floor) and its peak extra memory
  (``extra_info["peak_extra_MiB"]``);
* the interleaved comparisons (timing.py): medians of round-robin timings in
  this process, the figures to quote on a shared machine (one thread: CPU time).

Allocator: on glibc the benchmarks keep freed memory in the process
(``mallopt``: no trimming, no mmap below 32 MiB), as jemalloc / tcmalloc do, so
that no implementation pays page faults for its outputs in the steady state
and the floor compares memory traffic, not the kernel's page zeroing. Set
FACECORE_BENCH_SYSTEM_MALLOC=1 to measure with glibc's defaults instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
sys.path.insert(0, str(Path(__file__).parent))

from timing import INTERLEAVED, threads_id  # noqa: E402

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _keep_freed_memory() -> str:
    if os.environ.get("FACECORE_BENCH_SYSTEM_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return "system defaults"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        return "system defaults (mallopt unavailable)"
    return "freed memory kept (mallopt)" if ok else "system defaults (mallopt refused)"


ALLOCATOR = _keep_freed_memory()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    session = getattr(config, "_benchmarksession", None)
    if session is not None and session.benchmarks:
        groups: dict[str, list] = {}
        for bench in session.benchmarks:
            groups.setdefault(bench.group or "", []).append(bench)
        tr.section("facecore: ratios within each group (median time / facecore median time)")
        tr.write_line(f"allocator: {ALLOCATOR}")
        for group in sorted(groups):
            rows = groups[group]
            base = next((b for b in rows if b.extra_info.get("impl") == "facecore"), None)
            floor = next((b for b in rows if b.extra_info.get("impl") == "copy floor"), None)
            tr.write_line(f"[{group}]")
            for b in sorted(rows, key=lambda b: b.stats.median):
                impl = b.extra_info.get("impl", b.name)
                ratio = f"{b.stats.median / base.stats.median:8.2f}x" if base else "      - "
                fl = f" floor/t {floor.stats.median / b.stats.median:5.2f}" if floor else ""
                mem = b.extra_info.get("peak_extra_MiB")
                mem_s = f" {mem:9.2f} MiB" if mem is not None else ""
                tr.write_line(f"  {impl:40s} {b.stats.median * 1e3:10.3f} ms {ratio}{fl}{mem_s}")
    if INTERLEAVED:
        tr.section("facecore: interleaved comparisons (medians of round-robin timings, one process)")
        tr.write_line(f"allocator: {ALLOCATOR}; one thread: CPU time, more threads: wall-clock time")
        for title, threads, medians, baseline, floor in INTERLEAVED:
            tr.write_line(f"[{title}, {threads_id(threads)}]")
            base = medians[baseline]
            for impl, t in sorted(medians.items(), key=lambda kv: kv[1]):
                fl = f"   floor/t {medians[floor] / t:5.2f}" if floor else ""
                tr.write_line(f"  {impl:40s} {t * 1e3:10.3f} ms  t/{baseline} {t / base:8.2f}x{fl}")
