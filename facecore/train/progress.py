"""One-line-per-epoch progress text (printed by the driver, or by the loop in local mode)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_progress"]


def format_progress(
    metrics: dict[str, Any], epochs: int, fields: tuple[tuple[str, str], ...] = ()
) -> str:
    """``epoch E/N  loss L  <fields>  T s``: ``fields`` are the task's
    ``(metric key, format)`` pairs (:attr:`facecore.train.tasks.base.Task.progress`);
    missing or non-numeric metrics are left out."""

    def part(key: str, fmt: str) -> str:
        v = metrics.get(key)
        return "  " + fmt.format(v) if isinstance(v, (int, float)) else ""

    line = f"epoch {int(metrics['epoch']):3d}/{epochs}" + part("train_loss", "loss {:.4f}")
    line += "".join(part(key, fmt) for key, fmt in fields)
    return line + part("epoch_time_s", " {:.1f} s")
