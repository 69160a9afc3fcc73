"""The Ray-side pieces of a sweep (this module imports Ray; the rest of the package
imports it only when a sweep runs).

* :class:`ForwardToTune` runs on the Ray Train controller of a multi-worker trial and
  hands rank 0's metrics of every epoch to the Tune trial (through the queue of Ray's
  ``TuneReportCallback``) after the trial's per-epoch bookkeeping ``report`` (the trial
  passes :func:`~facecore.train.tune.trials.epoch_report`; taking it as an argument keeps
  this module free of an import back into ``trials``).
* :class:`TrainRunHandle` lets a multi-worker trial stop its Ray Train run when Tune
  stops the trial (ASHA, the end of a sweep, Ctrl-C), and :func:`sweep_trainable` is the
  Tune trainable whose ``cleanup`` does it (see :class:`TrainRunHandle` for why).
* :class:`SweepProgress` runs in the sweep's driver and prints one line per ended trial.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
from ray.tune import Callback
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.placement_group import placement_group_table, remove_placement_group
from ray.util.queue import Empty, Queue

__all__ = ["ForwardToTune", "SweepProgress", "TrainRunHandle", "active_train_run", "sweep_trainable"]


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


class TrainRunHandle(ControllerCallback, WorkerGroupCallback):
    """The Tune trial's hold on the Ray Train run it drives: a Train callback that sends
    the trial its controller's handle and the worker group's placement group, so that
    :meth:`stop` can end the run gracefully when Tune stops the trial.

    Why: Tune stops a trial (ASHA's decision, which it also takes at the last epoch,
    ``max_t``; the end of a sweep; Ctrl-C) by calling the trainable's ``stop`` and then
    ending its actor, without waiting for the training thread. The Train controller is an
    actor owned by the trial, so it dies with it, and its workers with it, before shutting
    the worker group down; the group's placement group was created by the controller, a
    non-detached actor, so Ray keeps it until the *job* (the sweep's driver) ends. Train
    V2's fallback, a detached ``PlacementGroupCleaner`` per run, asks Ray's State API
    whether the controller is alive, which needs the dashboard (facecore starts Ray
    without it), so it never removes the group: the workers' CPUs stay reserved and the
    next trial's Train run waits for them for ever. :meth:`stop` instead calls the
    controller's ``abort`` (what Ray Train does on Ctrl-C when it runs in the main
    thread): the workers are shut down, the placement group is removed and the cleaner
    stopped; then it waits until every placement group the run reserved is removed
    (removing it itself if the controller could not).

    Build it in the Tune trial (it creates the queue the trial owns) and pass it to the
    ``TorchTrainer``'s ``RunConfig(callbacks=...)``. Ray passes such internal callbacks
    through to the controller (as it does its own ``PlacementGroupCleanerCallback``)."""

    def __init__(self, abort_timeout_s: float = 60.0):
        self._queue = Queue(actor_options={"num_cpus": 0})
        self.abort_timeout_s = float(abort_timeout_s)
        self.controller = None
        self.placement_groups: list = []
        self.stopped = False

    # ---- on the Train controller

    def after_controller_start(self, train_run_context):
        self._queue.put(("controller", ray.get_runtime_context().current_actor))

    def after_worker_group_start(self, worker_group):
        state = worker_group.get_worker_group_state()
        self._queue.put(("placement_group", state.placement_group_handle.placement_group))

    # ---- in the Tune trial

    def _receive(self) -> None:
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except Empty:
                return
            except (RayActorError, AttributeError):  # closed (the run ended by itself)
                return
            if kind == "controller":
                self.controller = item
            else:
                self.placement_groups.append(item)

    def stop(self) -> None:
        """Abort the Train run (unless it ended) and wait until its placement groups are
        removed; a second call does nothing. Called from the trial's ``cleanup``."""
        if self.stopped:
            return
        self.stopped = True
        self._receive()
        if self.controller is not None:
            try:  # abort() ends the controller actor: its reply is an actor error
                ray.get(self.controller.abort.remote(), timeout=self.abort_timeout_s)
            except RayActorError:
                pass
            except GetTimeoutError:
                ray.kill(self.controller, no_restart=True)
        self._receive()
        deadline = time.monotonic() + self.abort_timeout_s
        for pg in self.placement_groups:
            while _pg_state(pg) not in ("REMOVED", None) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pg_state(pg) not in ("REMOVED", None):
                remove_placement_group(pg)
        self.close()

    def close(self) -> None:
        """End the queue (it holds the controller's handle, which would keep the controller
        alive until the trial ends)."""
        try:
            self._queue.shutdown(force=True)
        except Exception:  # noqa: BLE001 - the queue dies with the trial anyway
            pass


def _pg_state(pg) -> str | None:
    try:
        return placement_group_table(pg).get("state")
    except Exception:  # noqa: BLE001 - unknown to Ray: nothing to remove
        return None


#: The Train run the Tune trial in this process drives (set by the trial function while
#: ``fit`` runs); the trainable's ``cleanup`` stops it.
_ACTIVE: list[TrainRunHandle] = []


class active_train_run:  # noqa: N801 - used as a context manager, like contextlib's
    """``with active_train_run(handle):`` marks ``handle`` as this trial process's running
    Train run for the trainable's ``cleanup`` (see :func:`sweep_trainable`)."""

    def __init__(self, handle: TrainRunHandle):
        self.handle = handle

    def __enter__(self) -> TrainRunHandle:
        _ACTIVE.append(self.handle)
        return self.handle

    def __exit__(self, *exc) -> None:
        if self.handle in _ACTIVE:
            _ACTIVE.remove(self.handle)
        if not self.handle.stopped:  # the run ended by itself
            self.handle.close()


def sweep_trainable(trial_fn: Callable):
    """The Tune trainable of ``trial_fn`` (a function trainable named like it): Tune's
    function-trainable class whose ``cleanup`` first stops the Train run the trial still
    drives (:class:`TrainRunHandle`), so that a stopped trial hands its workers' resources
    back before Tune releases the trial's own."""
    from ray.tune.trainable.function_trainable import wrap_function

    class SweepTrial(wrap_function(trial_fn)):
        def cleanup(self):
            # imported here: Tune ships this class by value, with copies of the
            # module's globals; the registry is the one of the imported module
            from facecore.train.tune.callbacks import stop_train_runs

            stop_train_runs()
            super().cleanup()

    return SweepTrial


def stop_train_runs() -> None:
    """Stop every Train run this process's trial still drives (:class:`TrainRunHandle`)."""
    for handle in list(_ACTIVE):
        handle.stop()


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
