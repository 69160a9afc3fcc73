"""One Ray instance for every Ray test of a session (import the fixture in test modules).

``ray.init(num_cpus=2)`` once per session: each TorchTrainer run then costs its
worker start-up (~20 s) but not a cluster start-up. Tests use unique run names
under ``tmp_path`` (never ``~/ray_results``) and pytest-timeout, so a failed run
cannot leave a placement group that hangs the next test for long.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        import logging
        from pathlib import Path

        import facecore

        root = str(Path(facecore.__file__).resolve().parents[1])
        pp = os.pathsep.join([root] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"PYTHONPATH": pp, "OMP_NUM_THREADS": "1"}},
        )
        started = True
    yield ray
    if started:
        ray.shutdown()
