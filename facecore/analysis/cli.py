"""``facecore analyze``: embeddings, probes, bias matrices, per-group reports, learned spaces.

::

    facecore analyze embeddings --data london --data-root DIR (--model PATH | --pixels)
                                [--layer auto|embedding|features] [--color ATTR ...]
                                [--method tsne pca] [--dims 2 3] [--perplexity P] --output DIR
    facecore analyze probe      (--embeddings FILE | --data ... --model PATH | --pixels)
                                --target ATTR [...] [--probe logreg mlp] [--baseline-pixels]
                                [--folds K] --output DIR
    facecore analyze bias       (--embeddings FILE | ...) --target ATTR --group ATTR
                                [--task classification|regression|verification]
                                [--probe logreg|mlp] [--min-group N] [--far F] --output DIR
    facecore analyze bias       --train CONFIG [--set KEY=VALUE ...] --group ATTR
                                [--bin ATTR=EDGES[:NAMES] --group ATTR_bin] --output DIR
                                (one facecore.train.fit run per group + one on all; each
                                scored per group on the config's test split)
    facecore analyze groups     --model PATH --data ... --group ATTR [--target ATTR] --output DIR
    facecore analyze spaces     --data synthetic|folders ... [--group ATTR] [--loss ...]
                                [--steps N] [--bias-group V --bias-fraction F] --output DIR

Common: ``--bin KEY=EDGES[:NAMES]`` adds a label ``KEY_bin`` (e.g. ``--bin age=3,6`` groups
FairFace's nine age groups into three; ``--bin race=1:white,other``), ``--data-opt KEY=VALUE`` passes reader /
generator options (JSON values: ``--data-opt num_samples=1200``), ``--threads N`` caps the
torch and BLAS threads, ``--seed``. Every command writes JSON + Markdown (and PNGs) under
``--output`` and prints the tables.

``facecore/cli.py`` registers these with :func:`add_parser` and dispatches to :func:`run`.

Usage mistakes are reported through the subparser's ``error`` (one line
``facecore: error: ...``, exit 2), as elsewhere. ``python -m facecore.analysis.cli analyze
...`` runs the same commands stand-alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main", "run"]

EXIT_USAGE = 2
_SUBCOMMANDS = ("embeddings", "probe", "bias", "groups", "spaces")


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), json.loads(v)
    except json.JSONDecodeError:
        return k.strip(), v


def _bins(text: str) -> tuple[str, list[float], list[str] | None]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=EDGE,EDGE,...[:NAME,...], got {text!r}")
    k, v = text.split("=", 1)
    v, _, names = v.partition(":")
    try:
        edges = [float(x) for x in v.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bin edges must be numbers, got {v!r}") from None
    labels = [n.strip() for n in names.split(",")] if names else None
    if labels is not None and len(labels) != len(edges) + 1:
        raise argparse.ArgumentTypeError(
            f"{len(edges)} bin edges make {len(edges) + 1} bins, got {len(labels)} names")
    return k.strip(), edges, labels


def _data_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    from facecore.data.registry import DATASETS

    g = p.add_argument_group("data")
    g.add_argument("--data", choices=list(DATASETS), required=required, help="dataset")
    g.add_argument("--data-root", metavar="DIR", help="dataset folder (all but synthetic)")
    g.add_argument("--data-opt", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="reader / generator option, e.g. num_samples=1200 or require_age=true")
    g.add_argument("--bin", type=_bins, action="append", default=[], metavar="KEY=EDGES[:NAMES]",
                   help="add label KEY_bin cut at EDGES, e.g. age=3,6 or race=1:white,other")


def _source_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embeddings source (one of)")
    g.add_argument("--embeddings", metavar="FILE", help="saved embeddings (.npz + .json)")
    g.add_argument("--model", metavar="PATH",
                   help="export folder / model.pt / model.pt2, training checkpoint, or model "
                   "checkpoint (with --preprocess)")
    g.add_argument("--pixels", action="store_true", help="raw pixels (baseline)")
    g.add_argument("--layer", default="auto", choices=("auto", "embedding", "features"),
                   help="embedder output or backbone features (default: auto)")
    g.add_argument("--pixel-size", type=int, default=32, metavar="S",
                   help="side of the raw-pixel baseline (default 32)")
    g.add_argument("--preprocess", metavar="JSON",
                   help="PreprocessConfig as JSON text or file (bare model checkpoints)")
    g.add_argument("--batch-size", type=int, default=64, metavar="N")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="where to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, metavar="N", help="torch / BLAS threads")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``analyze`` and its subcommands to the main CLI's ``subparsers``."""
    a = subparsers.add_parser(
        "analyze",
        help="analyse embeddings and group bias (projections, probes, bias matrix, reports)",
        description="Embedding analysis and bias: projections, probes, the cross-group matrix, "
        "per-group reports of trained models, learned-space comparison.",
    )
    sub = a.add_subparsers(dest="analysis", metavar="ANALYSIS")
    sub.required = True

    e = sub.add_parser("embeddings", help="extract embeddings + t-SNE / PCA figures per attribute")
    _data_args(e, required=True)
    _source_args(e)
    e.add_argument("--color", nargs="+", default=None, metavar="ATTR",
                   help="attributes to colour by (default: every named label but identity)")
    e.add_argument("--method", nargs="+", default=["tsne"], choices=("tsne", "pca"))
    e.add_argument("--dims", nargs="+", type=int, default=[2], choices=(2, 3))
    e.add_argument("--perplexity", type=float, default=30.0)
    _common(e)

    pr = sub.add_parser("probe", help="cross-validated probes predicting attributes from embeddings")
    _data_args(pr)
    _source_args(pr)
    pr.add_argument("--target", nargs="+", required=True, metavar="ATTR")
    pr.add_argument("--probe", nargs="+", default=["logreg"], choices=("logreg", "mlp"))
    pr.add_argument("--folds", type=int, default=5)
    pr.add_argument("--baseline-pixels", action="store_true",
                    help="also probe the raw pixels of the same dataset")
    _common(pr)

    b = sub.add_parser("bias", help="cross-group matrix: train on one group, evaluate on each")
    _data_args(b)
    _source_args(b)
    t = b.add_argument_group("full training runs per group (instead of probes)")
    t.add_argument("--train", metavar="CONFIG",
                   help="training config (YAML path or packaged name): one facecore.train.fit "
                   "run per group with data.include, scored on the config's test split")
    t.add_argument("--checkpoint", choices=("latest", "best"), default="latest",
                   help="which checkpoint of each run predicts (default: latest, the same "
                   "budget for every row)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for --train, e.g. optim.epochs=5 (repeatable)")
    b.add_argument("--target", metavar="ATTR",
                   help="what the models predict (with --train: the task's label)")
    b.add_argument("--group", required=True, metavar="ATTR", help="the group attribute")
    b.add_argument("--task", choices=("classification", "regression", "verification"),
                   help="default: verification for identity, regression for ages, else classification")
    b.add_argument("--probe", default="logreg", choices=("logreg", "mlp"))
    b.add_argument("--folds", type=int, default=5)
    b.add_argument("--min-group", type=int, default=10, metavar="N",
                   help="leave out groups with fewer items (default 10)")
    b.add_argument("--far", type=float, default=0.01, help="FAR of TAR@FAR (verification)")
    b.add_argument("--unequal-train-size", action="store_true",
                   help="train each row on all its group's items (default: equal sizes)")
    _common(b)

    gr = sub.add_parser("groups", help="a trained model's metrics per group, best-worst gap")
    _data_args(gr, required=True)
    gr.add_argument("--model", required=True, metavar="PATH")
    gr.add_argument("--preprocess", metavar="JSON")
    gr.add_argument("--group", nargs="+", required=True, metavar="ATTR")
    gr.add_argument("--target", metavar="ATTR", help="label to score against (default by task)")
    gr.add_argument("--far", type=float, default=0.01)
    gr.add_argument("--min-group", type=int, default=1, metavar="N")
    gr.add_argument("--batch-size", type=int, default=64, metavar="N")
    _common(gr)

    s = sub.add_parser("spaces", help="softmax vs contrastive vs triplet embedders, balanced vs biased")
    _data_args(s, required=True)
    s.add_argument("--group", default="race", metavar="ATTR")
    s.add_argument("--loss", nargs="+", default=["softmax", "contrastive", "triplet"],
                   choices=("softmax", "contrastive", "triplet"))
    s.add_argument("--bias-group", type=int, default=0, metavar="V",
                   help="group value over-represented in the biased setting (-1: none)")
    s.add_argument("--bias-fraction", type=float, default=0.8)
    s.add_argument("--steps", type=int, default=300)
    s.add_argument("--p", type=int, default=16)
    s.add_argument("--k", type=int, default=4)
    s.add_argument("--embedding-dim", type=int, default=64)
    s.add_argument("--lr", type=float, default=2e-3)
    s.add_argument("--image-size", type=int, default=None,
                   help="input size (default: the dataset's synthetic size, else 64)")
    s.add_argument("--test-fraction", type=float, default=0.3)
    s.add_argument("--perplexity", type=float, default=30.0)
    _common(s)

    for p in (e, pr, b, gr, s):
        p.set_defaults(_parser=p)
    a.set_defaults(_parser=a)
    return a


# ----------------------------------------------------------------------- helpers


class _Usage(Exception):
    pass


def _open(a) -> Any:
    from facecore.data.registry import open_dataset

    if a.data is None:
        raise _Usage("give --embeddings FILE, or --data with --model / --pixels")
    opts = dict(a.data_opt)
    if a.data != "synthetic":
        if not a.data_root:
            raise _Usage(f"--data {a.data} needs --data-root DIR")
        if not Path(a.data_root).is_dir():
            raise _Usage(f"data root not found: {a.data_root}")
    if "gender_cues" in opts and isinstance(opts["gender_cues"], dict):
        opts["gender_cues"] = {int(k): v for k, v in opts["gender_cues"].items()}
    try:
        return open_dataset(a.data, a.data_root, **opts)
    except TypeError as e:  # an unknown --data-opt
        raise _Usage(f"--data-opt: {e}") from None


def _preprocess(text: str | None) -> Any:
    if not text:
        return None
    p = Path(text)
    try:
        d = json.loads(p.read_text() if p.is_file() else text)
    except json.JSONDecodeError as e:
        raise _Usage(f"--preprocess is neither a JSON file nor JSON text: {e}") from None
    from facecore.data.transforms import PreprocessConfig

    return PreprocessConfig.from_dict(d)


def _embeddings(a) -> Any:
    from facecore.analysis.embeddings import Embeddings, extract_embeddings, pixel_embeddings

    chosen = [x for x in ("embeddings", "model", "pixels") if getattr(a, x)]
    if len(chosen) != 1:
        raise _Usage("give exactly one of --embeddings, --model, --pixels")
    if a.embeddings:
        emb = Embeddings.load(a.embeddings)
    else:
        ds = _open(a)
        if a.pixels:
            emb = pixel_embeddings(ds, size=a.pixel_size)
        else:
            if not Path(a.model).exists():
                raise _Usage(f"model not found: {a.model}")
            emb = extract_embeddings(a.model, ds, layer=a.layer, batch_size=a.batch_size,
                                     preprocess=_preprocess(a.preprocess))
        emb.meta["data"] = {"name": a.data, "root": a.data_root, "options": dict(a.data_opt)}
    for key, edges, names in getattr(a, "bin", []):
        emb = emb.binned(key, edges)
        if names:
            emb.label_names[f"{key}_bin"] = names
    return emb


def _write(out: Path, name: str, payload: dict[str, Any], markdown: str | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json"]
    paths[0].write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    if markdown is not None:
        paths.append(out / f"{name}.md")
        paths[1].write_text(markdown + "\n")
    return paths


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------------- commands


def _cmd_embeddings(a) -> int:
    from facecore.analysis.projection import projection_figures

    emb = _embeddings(a)
    out = Path(a.output)
    npz, side = emb.save(out / "embeddings")
    colors = a.color or [k for k in emb.label_names if k != "identity"] or list(emb.labels)[:1]
    figs = projection_figures(emb, colors, out, methods=tuple(a.method), dims=tuple(a.dims),
                              perplexity=a.perplexity, seed=a.seed,
                              title=f"{a.data or 'embeddings'} ({emb.meta.get('layer')})")
    payload = {"embeddings": [str(npz), str(side)], "count": len(emb), "dim": emb.dim,
               "meta": emb.meta, "figures": figs}
    _write(out, "projections", payload, None)
    print(f"{len(emb)} embeddings of dimension {emb.dim} ({emb.meta.get('source')}, "
          f"layer {emb.meta.get('layer')}) -> {npz}")
    for f in figs:
        print(f"figure: {f['file']}")
    return 0


def _cmd_probe(a) -> int:
    from facecore.analysis.embeddings import pixel_embeddings
    from facecore.analysis.probes import probe, probe_table

    emb = _embeddings(a)
    sets = {str(emb.meta.get("source", "embeddings")) + f" ({emb.meta.get('layer')})": emb}
    if a.baseline_pixels:
        if emb.meta.get("source") == "pixels":
            raise _Usage("--baseline-pixels with --pixels probes the pixels twice")
        ds = _open(a)
        px = pixel_embeddings(ds, size=a.pixel_size)
        for key, edges, names in a.bin:
            px = px.binned(key, edges)
            if names:
                px.label_names[f"{key}_bin"] = names
        sets[f"pixels {a.pixel_size}x{a.pixel_size}"] = px
    results: dict[str, list] = {}
    for name, e in sets.items():
        for t in a.target:
            e.label(t)
        results[name] = [probe(e, t, model=m, folds=a.folds, seed=a.seed)
                         for t in a.target for m in a.probe]
    table = probe_table(results)
    payload = {"results": {k: [r.to_dict() for r in v] for k, v in results.items()}}
    paths = _write(Path(a.output), "probe", payload, table)
    print(table)
    print(f"written: {', '.join(map(str, paths))}")
    return 0


def _train_config(a) -> Any:
    """The ``--train`` config with ``--set`` overrides (and ``--data`` / ``--data-root``)."""
    from facecore.train.config import ConfigError, load_config

    if a.embeddings or a.model or a.pixels:
        raise _Usage("--train trains its own models: give no --embeddings, --model or --pixels")
    if a.task or a.data_opt:
        raise _Usage("--task and --data-opt do not apply to --train (use --set KEY=VALUE)")
    overrides = list(a.overrides)
    if a.data:
        overrides.append(f"data.name={a.data}")
    if a.data_root:
        overrides.append(f"data.root={a.data_root}")
    try:
        return load_config(a.train, overrides)
    except ConfigError as e:
        raise _Usage(str(e)) from None


def _cmd_bias(a) -> int:
    from facecore.analysis.bias import bias_matrix

    if a.train:
        from facecore.analysis.runs import fit_bias_matrix, get_label_key

        cfg = _train_config(a)
        target = get_label_key(cfg)
        if a.target and a.target != target:
            raise _Usage(f"--target {a.target}: a {cfg.task} config predicts {target!r}")
        # a bad config / data surfaces as a ConfigError (a ValueError: usage error, exit 2);
        # a failed run as TrainingError (exit 1)
        group, bins, names = a.group, None, None
        for key, edges, labels in a.bin:  # --group KEY_bin --bin KEY=EDGES[:NAMES]
            if a.group == f"{key}_bin":
                group, bins, names = key, edges, labels
            else:
                raise _Usage(f"--bin {key}: with --train, bin the group only (--group {key}_bin)")
        m = fit_bias_matrix(cfg, group, bins=bins, bin_names=names, checkpoint=a.checkpoint,
                            min_group_size=a.min_group, far=a.far,
                            equal_train_size=not a.unequal_train_size)
        a.target = target
    else:
        if a.overrides:
            raise _Usage("--set applies to --train")
        if not a.target:
            raise _Usage("the following arguments are required: --target")
        emb = _embeddings(a)
        emb.label(a.target)
        emb.label(a.group)
        m = bias_matrix(emb, a.target, a.group, task=a.task, model=a.probe, folds=a.folds,
                        seed=a.seed, min_group_size=a.min_group, far=a.far,
                        equal_train_size=not a.unequal_train_size)
    name = f"bias_{a.target}_by_{a.group}"
    out = Path(a.output)
    png = m.plot(out / f"{name}.png")
    md = m.to_markdown()
    paths = _write(out, name, m.to_dict(), md)
    print(md)
    print(f"written: {', '.join(map(str, paths + [png]))}")
    return 0


def _cmd_groups(a) -> int:
    from facecore.analysis.data import bin_values
    from facecore.analysis.groups import group_report, model_outputs

    if not Path(a.model).exists():
        raise _Usage(f"model not found: {a.model}")
    ds = _open(a)
    outs = model_outputs(a.model, ds, preprocess=_preprocess(a.preprocess), batch_size=a.batch_size)
    for key, edges, names in a.bin:
        if key not in outs.labels:
            raise _Usage(f"--bin {key}: the dataset has no label {key!r} ({sorted(outs.labels)})")
        outs.labels[f"{key}_bin"], auto = bin_values(outs.labels[key], edges, outs.label_names.get(key))
        outs.label_names[f"{key}_bin"] = names or auto
    out = Path(a.output)
    for g in a.group:
        rep = group_report(outs, g, target=a.target, far=a.far, min_group_size=a.min_group,
                           seed=a.seed)
        md = rep.to_markdown()
        paths = _write(out, f"groups_{g}", rep.to_dict(), md)
        print(md)
        print(f"written: {', '.join(map(str, paths))}\n")
    return 0


def _cmd_spaces(a) -> int:
    from facecore.analysis.embeddings import training_preprocess
    from facecore.analysis.spaces import compare_spaces

    ds = _open(a)
    size = a.image_size or int(getattr(ds, "image_size", 64))
    pre = training_preprocess(a.data, size)
    res = compare_spaces(
        ds, preprocess=pre, group=a.group, losses=tuple(a.loss),
        bias_group=None if a.bias_group < 0 else a.bias_group, bias_fraction=a.bias_fraction,
        test_fraction=a.test_fraction, out_dir=a.output, seed=a.seed, perplexity=a.perplexity,
        steps=a.steps, p=a.p, k=a.k, embedding_dim=a.embedding_dim, lr=a.lr,
    )
    res.meta["preprocess"] = pre.to_dict()
    md = res.to_markdown()
    paths = _write(Path(a.output), "spaces", res.to_dict(), md)
    print(md)
    print(f"written: {', '.join(map(str, paths + [Path(f) for f in res.figures]))}")
    return 0


_HANDLERS = {
    "embeddings": _cmd_embeddings,
    "probe": _cmd_probe,
    "bias": _cmd_bias,
    "groups": _cmd_groups,
    "spaces": _cmd_spaces,
}


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``facecore analyze ...`` command. User mistakes (bad attribute, missing
    file, too few groups) go through the subparser's ``error`` (usage error, exit 2)."""
    parser = args._parser
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        threadpool_limits = None
    try:
        if threadpool_limits is not None and args.threads is not None:
            with threadpool_limits(limits=args.threads):
                return _HANDLERS[args.analysis](args)
        return _HANDLERS[args.analysis](args)
    except _Usage as e:
        parser.error(str(e))
    except (KeyError, FileNotFoundError) as e:
        parser.error(str(e.args[0]) if e.args else str(e))
    except ValueError as e:
        parser.error(str(e).splitlines()[0])
    return EXIT_USAGE  # pragma: no cover - parser.error raises


# ------------------------------------------------------------------- stand-alone


class _Exit(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as facecore's CLI
        raise _Exit(message)


def main(argv: list[str] | None = None) -> int:
    """``python -m facecore.analysis.cli analyze ...`` (same commands as ``facecore analyze``)."""
    p = _Parser(prog="facecore")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add_parser(sub)
    try:
        args = p.parse_args(argv)
        return run(args)
    except _Exit as e:
        print(f"facecore: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one line unless debugging
        if os.environ.get("FACECORE_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()
        print(f"facecore: error: {type(exc).__name__}: {msg[0] if msg else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
