"""``microcnn cv CONFIG --folds K``: k-fold, group-aware cross-validation; reports mean ± std per metric.

Images of one physical sample (``data.group_column``) stay in one fold. Each fold trains into
``<output_dir>/<name>-cv<K>/fold_<i>/``; ``cv_summary.csv`` holds every fold, the mean and the sample
standard deviation (ddof = 1). When ``data.split`` is a folds file its folds are used (``--folds``, if
given, must match their number).

Example:
  microcnn cv configs/uhcs.yaml --folds 4 --set train.epochs=20
"""

from __future__ import annotations

import argparse
import math


def run(args: argparse.Namespace) -> int:
    from microcnn.commands.train import EpochBars
    from microcnn.config import load_config
    from microcnn.engine.api import cross_validate

    cfg = load_config(args.config, overrides=args.set)
    result = cross_validate(cfg, folds=args.folds, run_dir=args.run_dir, progress=EpochBars(cfg.train.epochs))
    width = max(len(k) for k in result.mean)
    print(f"{len(result.folds)}-fold cross-validation -> {result.run_dir}")
    print("mean ± std over folds (sample standard deviation, ddof = 1)")
    for key, mean in result.mean.items():
        std = result.std[key]
        print(
            f"{key:<{width}}  {mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{key:<{width}}  {mean:.4f}"
        )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv",
        help="k-fold cross-validation (mean ± std)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="number of folds K (default: the folds of data.split when it holds folds, else 5)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--run-dir", default=None, help="folder of the fold runs")
    p.set_defaults(func=run)
