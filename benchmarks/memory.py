"""Peak extra memory of a CPU computation, measured from the allocator's events.

``peak_extra_bytes(fn)`` runs ``fn`` once to warm up, then once under the
PyTorch profiler with ``profile_memory=True`` and replays the allocator's
allocation / free events in order: the result is the highest number of bytes
that were allocated during the call and not yet freed (kernel-internal
buffers, saved tensors and the gradient included; tensors that existed before
the call are not counted).
"""

from __future__ import annotations

import os
from collections.abc import Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")

from torch.profiler import ProfilerActivity, profile  # noqa: E402


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    fn()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())  # stable: keeps recorded order on ties
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def mib(n_bytes: int) -> float:
    return n_bytes / 2**20
