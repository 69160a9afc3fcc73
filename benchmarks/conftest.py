"""Benchmark session helpers: caches in the checkout, and a ratio table at the end.

Every benchmark sets ``benchmark.group`` (one problem size) and
``benchmark.extra_info["impl"]``; the implementation named ``facecore`` is the
baseline of its group. At the end of the run the table prints, per group, each
implementation's median time, its ratio to facecore (> 1: facecore is faster)
and its peak extra memory (``extra_info["peak_extra_MiB"]``), all from this one run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
sys.path.insert(0, str(Path(__file__).parent))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        groups.setdefault(bench.group or "", []).append(bench)
    tr = terminalreporter
    tr.section("facecore: ratios within each group (median time / facecore median time)")
    for group in sorted(groups):
        rows = groups[group]
        base = next((b for b in rows if b.extra_info.get("impl") == "facecore"), None)
        tr.write_line(f"[{group}]")
        for b in sorted(rows, key=lambda b: b.stats.median):
            impl = b.extra_info.get("impl", b.name)
            ratio = f"{b.stats.median / base.stats.median:8.2f}x" if base else "      - "
            mem = b.extra_info.get("peak_extra_MiB")
            mem_s = f"{mem:9.2f} MiB" if mem is not None else ""
            tr.write_line(f"  {impl:38s} {b.stats.median * 1e3:10.3f} ms {ratio} {mem_s}")
