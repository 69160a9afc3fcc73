"""Data-pipeline throughput on the real JPEGs in ../shared/data at 64 px: one training
epoch (decode? -> resize -> random crop 64 -> flip -> tensor -> normalise, every image
once, one process) of FairFace-540 (448 px JPEGs) and the London set (256 px JPEGs).

* ``decode each epoch``: the reader with ``PreprocessConfig.train_transform()`` (what
  training did before the cache);
* ``facecore``: :class:`facecore.data.cache.DecodedImageCache` in memory, then
  ``random_transform(train=True)`` per item (the baseline of the ratio table);
* ``facecore memmap``: the same from the memory-mapped cache file;
* ``cache build``: the one-off decode + resize that fills the cache.

``extra_info["images_per_s"]`` holds images per second of the median round. Run with
``make bench PYTEST_ARGS="benchmarks/bench_data.py"``; skipped without the shared data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from facecore.data import FairFace, LondonFaces, PreprocessConfig
from facecore.data.cache import DecodedImageCache

SHARED = Path(os.environ.get("FACECORE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PRE = PreprocessConfig(input_size=64, resize=68, horizontal_flip=0.5, mean=(0.5,) * 3, std=(0.25,) * 3)
DATA = {
    "fairface540": lambda: FairFace(SHARED / "fairface540", verify=False),
    "london_faces": lambda: LondonFaces(SHARED / "london_faces", verify=False),
}
IMPLS = ["decode each epoch", "facecore", "facecore memmap", "cache build"]


def _reader(name):
    marker = {"fairface540": "ground_truth.json", "london_faces": "labels.csv"}[name]
    if not (SHARED / name / marker).is_file():
        pytest.skip(f"{name} not found under {SHARED}")
    return DATA[name]()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("data", list(DATA))
def bench_training_epoch_64px(benchmark, data, impl, tmp_path):
    torch.set_num_threads(1)
    reader = _reader(data)
    n = len(reader)
    if impl == "decode each epoch":
        reader.transform = PRE.train_transform()
        ds = reader
    elif impl == "cache build":
        ds = None
    else:
        where = tmp_path if impl == "facecore memmap" else None
        cache = DecodedImageCache(reader, PRE.fixed_transform(), cache_dir=where, workers=1)
        ds = cache.dataset(PRE.random_transform(train=True))
    if ds is None:
        def run():
            DecodedImageCache(reader, PRE.fixed_transform(), workers=1)
    else:
        def run():
            for i in range(n):
                ds[i]

    benchmark.group = f"one training epoch at 64 px, {data} ({n} JPEGs)"
    benchmark.extra_info["impl"] = impl
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = round(n / benchmark.stats.stats.median, 1)
