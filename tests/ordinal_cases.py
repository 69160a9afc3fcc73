"""Shared inputs and tolerances for the ordinal op tests."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]

# Kernel vs reference: both compute in the accumulation type and round the
# result to the input dtype; float32 kernels use a 2-ulp log1p.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=2e-6),
    torch.float16: dict(rtol=2e-3, atol=2e-4),
    torch.bfloat16: dict(rtol=1.6e-2, atol=2e-3),
}

# Logit values that stress stability and ties: saturation at +-200, exact
# zeros (sigmoid = 1/2), tiny magnitudes, and ordinary values.
special_logits = st.sampled_from([0.0, -0.0, 200.0, -200.0, 1e-8, -1e-8, 30.0, -30.0, 17.5])
logit_values = st.one_of(st.floats(-8, 8, allow_nan=False, width=32), special_logits)


@st.composite
def ordinal_batch(draw, max_n=33, max_t=70, weights=None):
    """(logits float64 [N, T], labels int64 [N], weights float64 [T] or None)."""
    n = draw(st.integers(0, max_n))
    t = draw(st.integers(1, max_t))
    x = draw(hnp.arrays(np.float64, (n, t), elements=logit_values))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, t)))
    use_w = draw(st.booleans()) if weights is None else weights
    w = draw(hnp.arrays(np.float64, (t,), elements=st.floats(0, 3))) if use_w else None
    return (
        torch.from_numpy(x),
        torch.from_numpy(y),
        None if w is None else torch.from_numpy(w),
    )


def random_batch(n, t, seed=0, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, t, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = torch.randint(0, t + 1, (n,), generator=g)
    return x, y


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype], equal_nan=True)
