"""The two Ray callbacks of a sweep (this module imports Ray; the rest of the package
imports it only when a sweep runs).

* :class:`ForwardToTune` runs on the Ray Train controller of a multi-worker trial and
  hands rank 0's metrics of every epoch to the Tune trial (through the queue of Ray's
  ``TuneReportCallback``) after the trial's per-epoch bookkeeping ``report`` (the trial
  passes :func:`~facecore.train.tune.trials.epoch_report`; taking it as an argument keeps
  this module free of an import back into ``trials``).
* :class:`SweepProgress` runs in the sweep's driver and prints one line per ended trial.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.integration.ray_train import TuneReportCallback

__all__ = ["ForwardToTune", "SweepProgress"]


class ForwardToTune(TuneReportCallback):
    """Train controller -> Tune trial, every epoch (see the module doc)."""

    def __init__(self, run_dir: str, sweep: Mapping[str, Any], report: Callable):
        super().__init__()  # must be built inside the Tune trial: it opens the trial's queue
        self.run_dir = run_dir
        self.sweep = dict(sweep)
        self.report = report  # (run_dir, metrics, sweep) -> the dict Tune receives

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            self._training_actor_item_queue.put(self.report(self.run_dir, metrics[0], self.sweep))


class SweepProgress(Callback):
    """``[k/N] <params> seed=S: <summary>`` for every finished or failed trial.

    ``label(trial)`` and ``summary(trial)`` / ``failure(trial)`` make the text (the sweep
    driver provides them); ``count`` starts at the trials an earlier run ended. The output
    stream is not pickled with the tuner state (Tune saves its callbacks)."""

    def __init__(self, label: Callable, summary: Callable, failure: Callable, total: int,
                 count: int = 0, out=None):
        self.label, self.summary, self.failure = label, summary, failure
        self.total, self.count, self.out = total, count, out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["out"] = None
        return state

    def _print(self, text: str) -> None:
        self.count += 1
        print(f"[{self.count}/{self.total}] {text}", file=self.out or sys.stdout, flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(f"{self.label(trial)}: {self.summary(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"{self.label(trial)}: FAILED ({self.failure(trial)})")
