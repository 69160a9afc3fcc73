"""Shared helpers of the analysis tests: a fixed image feature, tiny models, thread caps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from facecore.analysis import Embeddings, dataset_labels  # noqa: E402


@pytest.fixture(autouse=True)
def one_blas_thread():
    """scikit-learn's BLAS threads on a shared 2-core machine oversubscribe badly: cap them."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def gradient_embeddings(ds, pool: int = 4) -> Embeddings:
    """A fixed, hand-made image descriptor of a synthetic dataset: pooled absolute luminance
    gradients. Unlike raw pixels it barely depends on skin tone, so it stands in for a face
    embedding that transfers across groups (the planted-bias test's control)."""
    x, _ = ds.batch()
    g = x.mean(1, keepdim=True)
    gx = (g[..., :, 1:] - g[..., :, :-1]).abs()
    gy = (g[..., 1:, :] - g[..., :-1, :]).abs()
    f = torch.cat([F.avg_pool2d(gx, pool).flatten(1), F.avg_pool2d(gy, pool).flatten(1)], 1)
    labels, names = dataset_labels(ds)
    return Embeddings(f.numpy(), labels, names, {"source": "gradients", "layer": "fixed"})


def blobs(n_per: int = 30, classes: int = 3, dim: int = 6, sep: float = 3.0, seed: int = 0,
          identities_per_class: int = 10) -> Embeddings:
    """Gaussian clusters with labels ``cls``, ``identity`` (repeating) and ``group``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (classes, dim))
    y = np.repeat(np.arange(classes), n_per)
    x = centres[y] + rng.normal(0, 1, (len(y), dim))
    ident = y * identities_per_class + rng.integers(0, identities_per_class, len(y))
    group = rng.integers(0, 2, len(y))
    return Embeddings(x, {"cls": y, "identity": ident, "group": group},
                      {"cls": [f"c{i}" for i in range(classes)], "group": ["g0", "g1"]},
                      {"source": "blobs"})
