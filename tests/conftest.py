"""Shared test fixtures.

* Real face images live in ``../shared/data`` beside the checkout (override with
  ``FACECORE_SHARED_DATA``); tests that use them skip cleanly when absent.
* Tests marked ``cuda`` skip without a CUDA device.
* ``fresh_python`` runs a snippet in a new interpreter (for save / load round
  trips that must not see this process's state).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Reproducible property tests by default (CI must not flake); run
# HYPOTHESIS_PROFILE=explore for a randomised search with more examples.
settings.register_profile("facecore", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "facecore"))

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("FACECORE_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"shared face data not found at {d}")
    return d


@pytest.fixture(scope="session")
def fairface_dir(shared_data) -> Path:
    d = shared_data / "fairface540"
    if not (d / "ground_truth.json").is_file():
        pytest.skip(f"FairFace sample not found at {d}")
    return d


@pytest.fixture(scope="session")
def orl_dir(shared_data) -> Path:
    d = shared_data / "orl_faces"
    if not (d / "s1").is_dir():
        pytest.skip(f"ORL faces not found at {d}")
    return d


@pytest.fixture
def fresh_python(tmp_path):
    """Run Python code in a fresh interpreter; returns its stdout, fails with its stderr."""

    def run(code: str, timeout: float = 300) -> str:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"fresh process failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    return run


@pytest.fixture(scope="session")
def london_dir(shared_data) -> Path:
    d = shared_data / "london_faces"
    if not (d / "labels.csv").is_file():
        pytest.skip(f"London faces not found at {d}")
    return d
