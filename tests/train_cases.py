"""Shared helpers for the tests that run the training loop in one process."""

from __future__ import annotations

from typing import Any

from facecore.train.loops import Session


class MemorySession(Session):
    """One process, no Ray: keeps every reported ``(metrics, state)`` in memory
    (``reports`` / ``states``, the newest pair as ``last``) and restores the state it was
    given."""

    def __init__(self, restore_state: dict[str, Any] | None = None):
        self.reports: list[dict[str, Any]] = []
        self.states: list[dict[str, Any] | None] = []
        self._restore = restore_state

    def restore(self):
        return self._restore

    def report(self, metrics, state):
        self.reports.append(metrics)
        self.states.append(state)

    @property
    def last(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        return self.reports[-1], self.states[-1]
