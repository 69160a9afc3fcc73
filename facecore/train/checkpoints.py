"""Training checkpoints on disk: one directory per epoch, ``checkpoint_epoch_EEEE``, with
``checkpoint.pt`` (a :mod:`facecore.formats` ``train`` dict; loads with
``torch.load(weights_only=True)``) and ``metrics.json`` (the same metrics, readable
without torch).

``checkpoint.pt`` holds ``format`` / ``format_version`` / ``facecore_version``, ``epoch``
(1-based, completed), ``model`` (:func:`facecore.models.model_checkpoint`: config +
weights), ``objective`` (the objective's own state, e.g. margin-head weights or centres;
not its frozen auxiliaries), ``optimizer`` / ``scheduler`` state, ``train_config`` (the
whole config as a dict), ``metrics`` (this epoch), ``history`` (every epoch so far),
``split_sizes`` and ``export`` (``preprocess`` as
:meth:`~facecore.data.transforms.PreprocessConfig.to_dict` plus the task's export settings
such as ``class_names`` / ``age_offset``: what ``facecore export`` needs, so it needs no
dataset).

Writing and resuming (the rules of a local run folder):

* :func:`persist_checkpoint` writes a checkpoint **atomically**: both files go to a hidden
  temporary directory ``.tmp-checkpoint_epoch_EEEE-<id>`` in the run folder (flushed to
  disk), which is then renamed to ``checkpoint_epoch_EEEE``. A directory with that name is
  therefore always complete; a killed writer leaves only a ``.tmp-*`` directory, which
  readers ignore and the next run removes (:func:`remove_stale_temporaries`).
* A **complete** checkpoint (:func:`checkpoint_problem` is ``None``: ``checkpoint.pt``
  loads with ``weights_only=True`` as a facecore training checkpoint of the epoch its
  directory names, and ``metrics.json`` parses) is never overwritten:
  :func:`persist_checkpoint` raises :class:`CheckpointExistsError`. An incomplete one (a
  partial copy written by an older facecore or another tool) is replaced.
* A run resumes from the **newest complete** checkpoint in its folder
  (:func:`resume_checkpoint`), whatever Ray Train's own checkpoint list says.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from facecore.formats import FormatError, check_format, header, load_torch_file

__all__ = [
    "CHECKPOINT_FILE",
    "METRICS_FILE",
    "CheckpointError",
    "CheckpointExistsError",
    "checkpoint_dir_name",
    "checkpoint_epoch",
    "checkpoint_problem",
    "complete_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "new_checkpoint",
    "persist_checkpoint",
    "prune_checkpoints",
    "remove_stale_temporaries",
    "resume_checkpoint",
    "score_rank",
    "write_checkpoint",
]

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
_PREFIX = "checkpoint_epoch_"
_TMP_PREFIX = ".tmp-"


class CheckpointError(FormatError):
    """A file that should be a facecore training checkpoint cannot be read (one line naming
    the file and the problem)."""


class CheckpointExistsError(FileExistsError):
    """Refused to overwrite a complete checkpoint."""


def checkpoint_dir_name(epoch: int) -> str:
    """Deterministic checkpoint directory name of a (1-based) epoch."""
    return f"{_PREFIX}{epoch:04d}"


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch a ``checkpoint_epoch_EEEE`` directory name stands for (``None``: another name)."""
    name = Path(path).name
    digits = name[len(_PREFIX):]
    return int(digits) if name.startswith(_PREFIX) and digits.isdigit() else None


def new_checkpoint(**content: Any) -> dict[str, Any]:
    """A training checkpoint dict: the ``train`` format header plus ``content``."""
    return {**header("train"), **content}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync directories
        pass
    finally:
        os.close(fd)


def write_checkpoint(d: Path, metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` and ``metrics.json`` into directory ``d`` (created), flushed
    to disk. Not atomic: :func:`persist_checkpoint` is (it calls this on a temporary
    directory)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / CHECKPOINT_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    with open(d / METRICS_FILE, "w") as f:
        f.write(json.dumps(metrics, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())


def persist_checkpoint(
    run_dir: str | Path, metrics: dict[str, Any], state: dict[str, Any]
) -> Path:
    """Write epoch ``state["epoch"]``'s checkpoint into the local folder ``run_dir``
    atomically (temporary directory + rename; see the module doc) and return its directory.

    Raises :class:`CheckpointExistsError` when a complete checkpoint of that epoch exists.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = checkpoint_dir_name(int(state["epoch"]))
    final = run_dir / name
    if final.exists():
        problem = checkpoint_problem(final)
        if problem is None:
            raise CheckpointExistsError(
                f"{final} is a complete checkpoint; refusing to overwrite it (training would "
                "repeat an epoch: resume from the newest complete checkpoint instead)"
            )
        _discard(final, name)  # an incomplete copy (older facecore / another tool)
    tmp = run_dir / f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    write_checkpoint(tmp, metrics, state)
    _fsync(tmp)
    fault_point("write", int(state["epoch"]))
    os.rename(tmp, final)
    _fsync(run_dir)
    return final


def _discard(path: Path, name: str) -> None:
    aside = path.parent / f"{_TMP_PREFIX}{name}-broken-{uuid.uuid4().hex[:8]}"
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the ``.tmp-checkpoint_epoch_*`` directories a killed writer left in
    ``run_dir`` (call before a run starts writing); returns what was removed."""
    p = Path(run_dir)
    stale = sorted(p.glob(f"{_TMP_PREFIX}{_PREFIX}*")) if p.is_dir() else []
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return stale


def _checkpoint_file(path: str | Path) -> Path:
    p = Path(path)
    return p / CHECKPOINT_FILE if p.is_dir() else p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read ``checkpoint.pt`` from a checkpoint directory (or the file itself), checked to
    be a facecore training checkpoint this facecore reads.

    Raises ``FileNotFoundError`` (nothing there), :class:`CheckpointError` (truncated,
    corrupt or not a torch file: one line naming the file) or
    :class:`~facecore.formats.FormatError` (another kind of file / a newer format).
    """
    p = _checkpoint_file(path)
    if not p.is_file():
        raise FileNotFoundError(f"no facecore checkpoint at {path} (expected {CHECKPOINT_FILE})")
    try:
        state = load_torch_file(p, "facecore training checkpoint")
    except FormatError as e:
        raise CheckpointError(str(e)) from None
    check_format(state, "train", str(p))
    return state


def checkpoint_problem(path: str | Path, *, state: dict[str, Any] | None = None) -> str | None:
    """``None`` when ``path`` is a complete checkpoint directory (``checkpoint.pt`` loads as
    the epoch the directory name says, ``metrics.json`` parses), else what is wrong."""
    d = Path(path)
    try:
        if state is None:
            state = load_checkpoint(d)
        json.loads((d / METRICS_FILE).read_text())
    except (OSError, ValueError) as e:  # FormatError / CheckpointError / JSON are ValueErrors
        return f"{type(e).__name__}: {e}"
    epoch = checkpoint_epoch(d)
    if epoch is not None and state.get("epoch") != epoch:
        return f"holds epoch {state.get('epoch')!r}, not {epoch}"
    return None


def _epoch_dirs(path: str | Path) -> list[Path]:
    """``checkpoint_epoch_*`` directories under a local run folder, oldest first."""
    p = Path(path)
    if not p.is_dir():
        return []
    dirs = [d for d in p.iterdir() if d.is_dir() and checkpoint_epoch(d) is not None]
    return sorted(dirs, key=checkpoint_epoch)


def complete_checkpoints(path: str | Path) -> list[Path]:
    """The complete checkpoint directories of a local run folder, oldest first."""
    return [d for d in _epoch_dirs(path) if checkpoint_problem(d) is None]


def resume_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """``(directory, loaded state)`` of the newest complete checkpoint in a local run folder
    (incomplete ones are skipped with a warning), or ``None``."""
    for d in reversed(_epoch_dirs(path)):
        try:
            state = load_checkpoint(d)
        except (OSError, ValueError) as e:
            _warn(f"skipping {d} on resume: {e}")
            continue
        problem = checkpoint_problem(d, state=state)
        if problem is None:
            return d, state
        _warn(f"skipping {d} on resume: {problem}")
    return None


def score_rank(metrics: dict[str, Any], score: str, mode: str) -> float:
    """A checkpoint's sort key by ``score`` (``mode`` ``min`` | ``max``): smaller is
    better; a missing, non-numeric or NaN score ranks last."""
    try:
        v = float(metrics.get(score))
    except (TypeError, ValueError):
        return float("inf")
    return (v if mode == "min" else -v) if v == v else float("inf")


def prune_checkpoints(path: str | Path, keep: int, score: str, mode: str) -> list[Path]:
    """Remove the complete checkpoints of a local run folder beyond the ``keep`` best by
    ``score`` (``mode`` ``min`` | ``max``; a checkpoint without the score ranks last), always
    keeping the newest (resume starts there); returns the removed directories. What Ray
    Train's ``CheckpointConfig(num_to_keep)`` does for worker runs, for the in-process
    local mode (``run.workers = 0``), where the loop writes the checkpoints itself."""
    dirs = complete_checkpoints(path)
    if keep < 1 or len(dirs) <= keep:
        return []

    def rank(d: Path) -> float:
        try:
            metrics = json.loads((d / METRICS_FILE).read_text())
        except (OSError, ValueError):
            return float("inf")
        return score_rank(metrics, score, mode)

    kept = set(sorted(dirs, key=rank)[:keep]) | {dirs[-1]}
    removed = [d for d in dirs if d not in kept]
    for d in removed:
        shutil.rmtree(d, ignore_errors=True)
    return removed


def latest_checkpoint(path: str | Path) -> Path | None:
    """The newest complete ``checkpoint_epoch_*`` directory under a local run folder."""
    for d in reversed(_epoch_dirs(path)):
        if checkpoint_problem(d) is None:
            return d
    return None


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)


# ----------------------------------------------------------------- fault injection

#: Environment variable naming a point at which rank 0 stops, for tests that SIGKILL a run
#: exactly there: ``"<point>:<epoch>"`` with point ``train`` (inside the training pass of
#: that epoch), ``write`` (checkpoint files written to the temporary directory, before the
#: rename) or ``report`` (checkpoint complete on disk, before Ray Train records it). The
#: process writes the file named by ``FACECORE_TEST_STOP_FILE`` and sleeps.
STOP_ENV = "FACECORE_TEST_STOP_AT"


def fault_point(point: str, epoch: int) -> None:
    """Stop here (see :data:`STOP_ENV`) when the environment asks for it; else nothing."""
    if os.environ.get(STOP_ENV) != f"{point}:{epoch}":
        return
    marker = os.environ.get("FACECORE_TEST_STOP_FILE")
    if marker:
        Path(marker).write_text(f"{point}:{epoch} {os.getpid()}\n")
    print(f"facecore: stopped at {point}:{epoch} ({STOP_ENV})", file=sys.stderr, flush=True)
    while True:
        time.sleep(60)
