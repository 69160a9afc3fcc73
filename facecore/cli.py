"""The ``facecore`` command line (console script ``facecore = facecore.cli:main``).

::

    facecore train --task age [--config FILE|NAME] [--data synthetic|utkface|...]
                   [--data-root DIR] [--workers N] [--gpus] [--epochs N]
                   [--storage DIR|URI] [--name NAME] [--set key=value ...]
    facecore eval CHECKPOINT [--data-root DIR] [--json]
    facecore export CHECKPOINT --output DIR
    facecore predict --model DIR IMAGE... [--json] [--detect] [--format torchscript|export]
    facecore analyze embeddings|probe|bias|groups|spaces ...   (facecore.analysis.cli)
    facecore bench [PYTEST_ARGS...]

Usage errors (unknown option, bad config key, unknown head, missing data root,
missing file) print one line ``facecore: error: ...`` to stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too)
        raise UsageError(message)


_EPILOG_TRAIN = """\
examples:
  facecore train --task age                                  # CORAL on synthetic faces
  facecore train --task age --config age_corn_utkface --data-root /data/UTKFace
  facecore train --config age_coral_fairface --data-root /data/fairface540 --workers 0
  facecore train --task embedding --set metric.loss=arcface --set optim.epochs=20
packaged configs: age_coral_synthetic, age_corn_utkface, age_coral_fairface,
  age_coral_london, gender_synthetic, embedding_triplet_synthetic,
  embedding_arcface_folders (or a YAML path).
On a cluster: RAY_ADDRESS=auto facecore train ... (or `ray job submit -- facecore train ...`).
"""


def build_parser() -> argparse.ArgumentParser:
    from facecore.data.registry import DATASETS
    from facecore.train.tasks import TASKS

    p = _Parser(
        prog="facecore",
        description="facecore: face soft-biometrics (ordinal age, gender, face embeddings).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a model with Ray Train, then evaluate, export and plot it",
        description="Train with Ray Train (TorchTrainer); evaluate the best checkpoint on the "
        "test split, export it (TorchScript + torch.export) and write plots.",
        epilog=_EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--task", choices=list(TASKS), help="what to train (default: the config's task)")
    t.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config path or packaged config name (default: the task's synthetic example)",
    )
    t.add_argument("--data", choices=list(DATASETS), help="dataset (overrides data.name)")
    t.add_argument("--data-root", metavar="DIR", help="dataset folder (data.root)")
    t.add_argument("--workers", type=int, metavar="N", help="Ray Train workers (run.workers; 0: in-process)")
    t.add_argument("--gpus", action="store_true", help="one GPU per worker (run.use_gpu)")
    t.add_argument("--epochs", type=int, metavar="N", help="epochs (optim.epochs)")
    t.add_argument("--storage", metavar="DIR", help="checkpoint storage, path or URI (run.storage)")
    t.add_argument("--name", metavar="NAME", help="run name; same storage+name resumes (run.name)")
    t.add_argument("--output", metavar="DIR", help="export/plots/evaluation folder (run.output)")
    t.add_argument("--address", metavar="ADDR", help="Ray cluster address (run.address)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set optim.lr=0.01 --set ordinal.head=corn",
    )
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.add_argument("--json", action="store_true", help="print the final result as JSON")

    e = sub.add_parser(
        "eval",
        help="evaluate a training checkpoint on its test split",
        description="Evaluate a checkpoint directory written by `facecore train` on the test "
        "split of its config (or of --data-root), print the metrics.",
    )
    e.add_argument("checkpoint", help="checkpoint directory (checkpoint_epoch_NNNN) or run folder")
    e.add_argument("--data-root", metavar="DIR", help="evaluate on this dataset folder instead")
    e.add_argument("--output", metavar="DIR", help="where to write evaluation.json and plots")
    e.add_argument("--plot", action="store_true", help="also write the plots")
    e.add_argument("--json", action="store_true", help="print JSON")

    x = sub.add_parser(
        "export",
        help="export a training checkpoint (TorchScript model.pt + torch.export model.pt2)",
        description="Export a checkpoint directory written by `facecore train` for serving, "
        "with the preprocessing and labels stored in the checkpoint (no dataset needed).",
    )
    x.add_argument("checkpoint", help="checkpoint directory or run folder")
    x.add_argument("--output", "-o", required=True, metavar="DIR", help="export folder")

    r = sub.add_parser(
        "predict",
        help="predict age / gender / embedding for images with an exported model",
        description="Run an exported model (folder from `facecore export`/`train`) on images.",
    )
    r.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    r.add_argument("--model", "-m", required=True, metavar="DIR", help="exported model folder or file")
    r.add_argument("--json", action="store_true", help="print one JSON list")
    r.add_argument("--detect", action="store_true", help="crop the largest face first (OpenCV)")
    r.add_argument(
        "--format", choices=["torchscript", "export"], default=None,
        help="which file of an export folder to load: model.pt (torchscript, the default when "
        "present) or model.pt2 (export); both run code from the file, load only models you trust",
    )
    r.add_argument("--sha256", metavar="HEX", help="refuse the model file unless it has this SHA-256")
    r.add_argument("--batch-size", type=int, default=32, metavar="N")

    b = sub.add_parser(
        "bench",
        help="run the benchmarks (pytest-benchmark) from a source checkout",
        description="Run benchmarks/ with pytest-benchmark; extra arguments go to pytest.",
    )
    b.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")

    from facecore.analysis.cli import add_parser as add_analyze_parser

    add_analyze_parser(sub)
    return p


# ------------------------------------------------------------------ commands


def _resolve_checkpoint(path: str) -> str:
    from facecore.train.checkpoints import CHECKPOINT_FILE, latest_checkpoint

    if "://" in path:
        return path
    p = Path(path)
    if (p / CHECKPOINT_FILE).is_file() or p.is_file():
        return str(p)
    if p.is_dir():
        best = _best_in_run(p)
        if best is not None:
            return str(best)
        latest = latest_checkpoint(p)
        if latest is not None:
            return str(latest)
    raise UsageError(f"no training checkpoint at {path} (expected a checkpoint_epoch_* folder)")


def _best_in_run(run: Path) -> Path | None:
    """The run's best checkpoint by its config's score (from the metrics.json files)."""
    from facecore.train.checkpoints import METRICS_FILE, complete_checkpoints, load_checkpoint
    from facecore.train.config import config_from_dict

    dirs = complete_checkpoints(run)
    if not dirs:
        return None
    cfg = config_from_dict(load_checkpoint(dirs[-1])["train_config"])
    score, mode = cfg.score()
    sign = 1.0 if mode == "min" else -1.0
    rows = [(json.loads((d / METRICS_FILE).read_text()), d) for d in dirs]
    rows = [r for r in rows if isinstance(r[0].get(score), (int, float))]
    return min(rows, key=lambda r: sign * r[0][score])[1] if rows else None


def _cmd_train(a) -> int:
    from facecore.train.config import load_config
    from facecore.train.runner import fit

    overrides = list(a.overrides)
    for flag, key in (
        ("data", "data.name"),
        ("data_root", "data.root"),
        ("workers", "run.workers"),
        ("epochs", "optim.epochs"),
        ("storage", "run.storage"),
        ("name", "run.name"),
        ("output", "run.output"),
        ("address", "run.address"),
    ):
        v = getattr(a, flag)
        if v is not None:
            overrides.append(f"{key}={json.dumps(v) if isinstance(v, str) else v}")
    if a.gpus:
        overrides.append("run.use_gpu=true")
    path = a.config
    if path is None:
        from facecore.train.tasks import get_task

        path = get_task(a.task or "age").default_config
    cfg = load_config(path, overrides, task=a.task)
    if a.print_config:
        import yaml

        from facecore.train.config import config_to_dict

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    res = fit(cfg, out=sys.stderr if a.json else sys.stdout)
    summary = {
        "run": res.run_path,
        "epochs": res.epochs_completed,
        "best_checkpoint": res.best_checkpoint,
        "metrics": res.metrics,
        "test_metrics": res.test_metrics,
        "test_protocol": res.test_protocol,
        "export_dir": str(res.export_dir) if res.export_dir else None,
        "plots": {k: str(v) for k, v in res.plots.items()},
        "wall_time_s": round(res.wall_time_s, 1),
    }
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    print(f"done in {s['wall_time_s']} s, {s['epochs']} epochs; run: {s['run']}")
    print(f"best checkpoint: {s['best_checkpoint']}")
    if s["test_metrics"]:
        print(f"test ({s['test_protocol']}): "
              + "  ".join(f"{k[5:]} {v:.4g}" for k, v in s["test_metrics"].items()))
    if s["export_dir"]:
        print(f"exported model: {s['export_dir']}")
    for k, v in s["plots"].items():
        print(f"plot ({k}): {v}")


def _cmd_eval(a) -> int:
    from facecore.train.runner import finalize

    ckpt = _resolve_checkpoint(a.checkpoint)
    outdir = Path(a.output) if a.output else (Path(ckpt).parent if "://" not in ckpt else Path("."))
    overrides = {"root": a.data_root} if a.data_root else None
    if a.data_root and not Path(a.data_root).is_dir():
        raise UsageError(f"data root not found: {a.data_root}")
    res = finalize(ckpt, outdir, export=False, plot=a.plot, data_overrides=overrides)
    m = res["test_metrics"]
    if a.json:
        print(json.dumps({"checkpoint": ckpt, "test_protocol": res["test_protocol"], **m}, indent=1))
    else:
        print(f"checkpoint: {ckpt}")
        print(f"test protocol: {res['test_protocol']}")
        for k, v in m.items():
            print(f"{k:28s} {v:.4f}")
    return 0


def _cmd_export(a) -> int:
    from facecore.train.runner import export_checkpoint, model_from_training_checkpoint

    ckpt = _resolve_checkpoint(a.checkpoint)
    model, cfg, state = model_from_training_checkpoint(ckpt)
    out = export_checkpoint(model, state, Path(a.output))
    print(f"exported {cfg.task} model from {ckpt} to {out}")
    return 0


def _cmd_predict(a) -> int:
    from facecore.serving import load

    missing = [p for p in a.images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"image not found: {missing[0]}")
    if not Path(a.model).exists():
        raise UsageError(f"model not found: {a.model}")
    predictor = load(a.model, format=a.format, sha256=a.sha256)
    preds = predictor.predict(list(a.images), batch_size=a.batch_size, detect=a.detect)
    rows = []
    for path, p in zip(a.images, preds):
        d = p.to_dict()
        d = {"image": path, **d}
        rows.append(d)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    for path, p in zip(a.images, preds):
        print(f"{path}: {_describe(p)}")
    return 0


def _describe(p) -> str:
    d = p.to_dict()
    if "age" in d:
        probs = d.get("class_probs") or []
        top = max(probs) if probs else float("nan")
        name = f" ({d['class_name']})" if d.get("class_name") else ""
        return f"age {d['age']:.1f}{name}, class {d['label']} p={top:.2f}"
    if "prob" in d:
        name = d.get("class_name") or d["label"]
        conf = d["prob"] if d["label"] == 1 else 1 - d["prob"]
        return f"{name} (p={conf:.2f}, P(class 1)={d['prob']:.3f})"
    emb = d.get("embedding") or []
    return f"embedding [{len(emb)}] " + " ".join(f"{v:+.3f}" for v in emb[:4]) + " ..."


def _cmd_bench(a) -> int:
    root = Path(__file__).resolve().parents[1]
    bench = root / "benchmarks"
    if not bench.is_dir():
        raise UsageError(f"benchmarks/ not found next to the facecore package ({root}): run from a source checkout")
    cmd = [
        sys.executable, "-m", "pytest", str(bench), "-o", "python_files=bench_*.py",
        "-o", "python_functions=test_* bench_*", "--benchmark-only",
        "--benchmark-columns=min,median,mean,rounds", "--benchmark-sort=name",
        *a.pytest_args,
    ]
    return subprocess.call(cmd, cwd=root)


def _cmd_analyze(a) -> int:
    from facecore.analysis.cli import run

    return run(a)


_COMMANDS = {
    "train": _cmd_train,
    "eval": _cmd_eval,
    "export": _cmd_export,
    "predict": _cmd_predict,
    "bench": _cmd_bench,
    "analyze": _cmd_analyze,
}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure while running, 2 usage error)."""
    from facecore.train.config import ConfigError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"facecore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"facecore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("facecore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line unless debugging
        if os.environ.get("FACECORE_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()
        print(f"facecore: error: {type(exc).__name__}: {msg[0] if msg else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
