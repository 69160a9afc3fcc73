"""Sweep the SAN's loss weights with Ray Tune: a privacy-utility Pareto front.

    python tune/sweep_san_weights.py --name san-weights                   # san_synthetic, 8 draws, ASHA
    python tune/sweep_san_weights.py --num-samples 16 --seeds 0 1 --epochs 8 --name san16
    python tune/sweep_san_weights.py --space san.lambda_rec=loguniform:0.3:3 \\
        --space san.lambda_match=grid:16,64,256 --name san-grid
    ray job submit --working-dir . -- python tune/sweep_san_weights.py \\
        --workers-per-trial 4 --gpus-per-trial 1 --num-samples 32 \\
        --storage /shared/tune --name san-weights                         # a GPU cluster

Before any trial: the auxiliaries of the loss, validation evaluators, unseen test
evaluators and the autoencoder-only run are trained once in <storage>/<name>/shared and
every trial references them by path. Searched by default: san.lambda_rec, san.lambda_match
(lambda_gender = 1 is the scale), san.pretrain_epochs, san.match_warmup_epochs. Each epoch
a trial reports privacy (validation gender accuracy SM - OP) and utility (validation
matcher AUC on SM / the autoencoder-only run's); ASHA prunes on privacy + utility
(--weights). At the end the unseen test evaluators score every finished trial; the sweep
writes pareto.csv / pareto.json / pareto.png, chosen.json and the tables. Interrupted? Run
the same command again (same --storage / --name).
"""

from __future__ import annotations

import argparse
import sys

from facecore.train.tune.cli import (
    add_sweep_arguments,
    base_config,
    print_json,
    run_main,
    sweep_kwargs,
    sweep_space,
)
from facecore.train.tune.san import sweep_san_weights


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_arguments(ap, default_config="san_synthetic", default_name="san-weights",
                        asha_default=True, num_samples_default=8)
    ap.add_argument("--no-export", action="store_true", help="do not export the chosen trial")
    a = ap.parse_args(argv)
    kwargs = sweep_kwargs(a)
    for k in ("objectives", "evaluate"):
        kwargs.pop(k)
    if a.objectives:
        ap.error("--objective: the SAN sweep's objectives are privacy and relative utility")
    asha = kwargs.pop("asha")
    if a.asha and a.grace_period is None:
        asha = True  # the grace period of facecore.train.tune.san (after the gender loss starts)
    result = sweep_san_weights(base_config(a), space=sweep_space(a) or None, asha=asha,
                               export_chosen=not a.no_export, **kwargs)
    print_json(a, result)
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
