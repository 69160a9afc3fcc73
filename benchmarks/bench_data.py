"""Data-pipeline throughput on the real JPEGs in ../shared/data at 64 px: one training
epoch (decode? -> resize -> random crop 64 -> flip -> tensor -> normalise, every image
once, one process, one thread) of FairFace-540 (448 px JPEGs) and the London set (256 px
JPEGs).

* ``decode each epoch``: the reader with ``PreprocessConfig.train_transform()`` (what
  training did before the cache);
* ``facecore``: :class:`facecore.data.cache.DecodedImageCache` in memory, then
  ``random_transform(train=True)`` per item (the baseline of the ratio tables);
* ``facecore memmap``: the same from the memory-mapped cache file;
* ``cache build``: the one-off decode + resize that fills the cache (about one
  uncached epoch).

The three epoch variants are timed round-robin in one process (``timing.py``:
``interleaved_medians``, process CPU time at one thread), so their ratios see the same
machine load; ``extra_info["images_per_s"]`` holds images per second of the
pytest-benchmark rounds. Run with ``make bench PYTEST_ARGS="benchmarks/bench_data.py"``;
skipped without the shared data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from timing import interleaved_medians, num_threads, record_interleaved

from facecore.data import FairFace, LondonFaces, PreprocessConfig
from facecore.data.cache import DecodedImageCache

SHARED = Path(os.environ.get("FACECORE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PRE = PreprocessConfig(input_size=64, resize=68, horizontal_flip=0.5, mean=(0.5,) * 3, std=(0.25,) * 3)
DATA = {
    "fairface540": ("ground_truth.json", lambda: FairFace(SHARED / "fairface540", verify=False)),
    "london_faces": ("labels.csv", lambda: LondonFaces(SHARED / "london_faces", verify=False)),
}


def _epoch(ds):
    def run():
        for i in range(len(ds)):
            ds[i]

    return run


@pytest.mark.parametrize("data", list(DATA))
def bench_training_epoch_64px(benchmark, data, tmp_path):
    marker, open_reader = DATA[data]
    if not (SHARED / data / marker).is_file():
        pytest.skip(f"{data} not found under {SHARED}")
    uncached = open_reader()
    uncached.transform = PRE.train_transform()
    reader = open_reader()
    with num_threads(1):
        memory = DecodedImageCache(reader, PRE.fixed_transform(), workers=1)
        disk = DecodedImageCache(reader, PRE.fixed_transform(), cache_dir=tmp_path, workers=1)
    tf = PRE.random_transform(train=True)
    n = len(reader)
    cases = {
        "decode each epoch": _epoch(uncached),
        "facecore": _epoch(memory.dataset(tf)),
        "facecore memmap": _epoch(disk.dataset(tf)),
        "cache build": lambda: DecodedImageCache(reader, PRE.fixed_transform(), workers=1),
    }
    title = f"one training epoch at 64 px, {data} ({n} JPEGs)"
    record_interleaved(title, 1, interleaved_medians(cases, 5, 1), "facecore", None)
    benchmark.group = title
    benchmark.extra_info["impl"] = "facecore"
    with num_threads(1):
        benchmark.pedantic(cases["facecore"], rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(n / benchmark.stats.stats.median, 1)
