"""Shared inputs and tolerances for the face-matching op tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]

# Kernel vs reference. Both accumulate in float32 for half types, but the
# kernel uses the matrix-product form of the distance and a different
# summation order, so the looser rows allow for rounding of d to the dtype.
TOL = {
    torch.float64: dict(rtol=1e-9, atol=1e-11),
    torch.float32: dict(rtol=2e-4, atol=2e-5),
    torch.float16: dict(rtol=1e-2, atol=2e-3),
    torch.bfloat16: dict(rtol=5e-2, atol=2e-2),
}

MININGS = ["none", "all", "hard", "semihard", "easy", "batch_hard"]
REDUCTIONS = ["mean_nonzero", "mean", "sum"]
METRICS = ["euclidean", "sqeuclidean", "cosine"]


def embeddings_batch(b: int, d: int, identities: int, seed: int = 0, dtype=torch.float64):
    """(embeddings [b, d], labels [b] int64 with `identities` ids, shuffled)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, max(identities, 1), (b,), generator=g)
    return x, labels


def pk_batch(p: int, k: int, d: int = 16, seed: int = 0, dtype=torch.float32, spread: float = 0.5):
    """A P x K batch: p identities, k images each, clustered around identity centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(p, d, generator=g)
    labels = torch.arange(p).repeat_interleave(k)
    x = centres[labels] + spread * torch.randn(p * k, d, generator=g)
    perm = torch.randperm(p * k, generator=g)
    return x[perm].to(dtype), labels[perm]


@st.composite
def matching_batch(draw, max_b: int = 14, max_d: int = 6):
    """(embeddings float64 [B, D], labels int64 [B]) with few identities so that
    triplets exist, sometimes duplicated rows (zero distances, ties)."""
    b = draw(st.integers(0, max_b))
    d = draw(st.integers(1, max_d))
    ids = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    x, labels = embeddings_batch(b, d, ids, seed)
    if b >= 2 and draw(st.booleans()):
        x[1] = x[0]  # exact duplicate: d = 0 off the diagonal, ties in swap
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    return x * scale, labels


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype], equal_nan=True)
