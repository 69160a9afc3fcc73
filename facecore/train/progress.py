"""One-line-per-epoch progress text (printed by the driver, or by the loop in local mode)."""

from __future__ import annotations

from typing import Any

__all__ = ["format_progress"]


def format_progress(metrics: dict[str, Any], epochs: int) -> str:
    """One progress line: epoch, train loss, the task's key validation metrics, time."""

    def f(key: str, label: str, fmt: str = ".3f") -> str:
        v = metrics.get(key)
        return f"  {label} {v:{fmt}}" if isinstance(v, (int, float)) else ""

    line = f"epoch {int(metrics['epoch']):3d}/{epochs}" + f("train_loss", "loss", ".4f")
    line += f("val_mae", "val MAE") + f("val_median_mae", "(median")
    line += ")" if "val_median_mae" in metrics else ""
    line += f("val_rank_inconsistency", "rank-inc")
    line += f("val_accuracy", "val acc") + f("val_auc", "val AUC") + f("val_ece", "ECE")
    line += f("val_eer", "val EER")
    line += f("epoch_time_s", "", ".1f") + (" s" if "epoch_time_s" in metrics else "")
    return line
