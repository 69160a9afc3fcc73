"""Sweep the ordinal heads (CE, Niu et al.'s OR-CNN, CORAL, CORN) with Ray Tune: every
head x seed (and any other searched key), ASHA, multi-worker trials, resume by name.

    python tune/sweep_ordinal_heads.py                            # 4 heads, seed 0, small synthetic
    python tune/sweep_ordinal_heads.py --seeds 0 1 2 --asha --name heads
    python tune/sweep_ordinal_heads.py --heads coral corn --space optim.lr=loguniform:1e-3:1e-2 \
        --num-samples 4 --seeds 0 1
    python tune/sweep_ordinal_heads.py --data fairface --data-root /data/fairface540 \
        --set data.image_size=64 --epochs 12 --seeds 0 1 2 --name fairface-heads

The table lists every head with validation and test MAE as mean ± sd over the seeds, best
first (the CORAL paper's claim is CORAL <= OR-CNN <= CE in MAE). Interrupted (Ctrl-C)?
Run the same command again: finished trials are not rerun. Results, tables and plots:
<storage>/<name>/ (see tune/README.md).
"""

from __future__ import annotations

import argparse
import sys

from facecore.models.ordinal import HEADS
from facecore.train.tune import sweep_ordinal_heads
from facecore.train.tune.cli import (
    add_sweep_arguments,
    base_config,
    default_name,
    print_json,
    run_main,
    sweep_kwargs,
    sweep_space,
)
from facecore.train.tune.ordinal import TUNE_SMALL


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS),
                    help="heads to compare (ordinal.head=grid:...; default all four)")
    ap.add_argument("--lrs", nargs="+", type=float, metavar="LR",
                    help="learning rates (optim.lr=grid:...; default: the config's)")
    add_sweep_arguments(ap, default_config="age_coral_synthetic",
                        default_name=default_name("ordinal-heads"))
    a = ap.parse_args(argv)
    base = base_config(a, TUNE_SMALL if a.config == "age_coral_synthetic" else [])
    kwargs = sweep_kwargs(a)
    result = sweep_ordinal_heads(base, heads=a.heads, lrs=a.lrs, space=sweep_space(a), **kwargs)
    print_json(a, result)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
