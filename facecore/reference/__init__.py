"""Pure-PyTorch reference implementations of facecore's fused ops.

They define the semantics the compiled kernels must reproduce, and are what the
tests compare against. Use them to read what an op computes, or where you need
a differentiable, device-agnostic fallback.
"""

from facecore.reference import matching, ordinal

__all__ = ["matching", "ordinal"]
