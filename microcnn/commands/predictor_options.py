"""The Predictor options shared by ``predict`` and ``predict-h5`` (one definition, one set of defaults)."""

from __future__ import annotations

import argparse
from typing import Any

TILE = 1024  # = Predictor's default: an image up to this side goes through in one pass
BATCH = 2


def add_predictor_options(parser: argparse.ArgumentParser, *, rescale: bool = True) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps (default auto)")
    parser.add_argument("--tile", type=int, default=TILE, help=f"tile side in px for large images ({TILE})")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (0.25)")
    parser.add_argument("--batch-size", type=int, default=BATCH, help=f"tiles per forward pass ({BATCH})")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: 8 flips/rotations")
    if rescale:
        parser.add_argument("--rescale", action="store_true", help="resample to the training pixel size")


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :class:`microcnn.inference.predictor.Predictor` given on the command line."""
    options = {"device": args.device, "tile": args.tile, "overlap": args.overlap,
               "batch_size": args.batch_size, "tta": args.tta}  # fmt: skip
    if hasattr(args, "rescale"):
        options["rescale"] = args.rescale
    return options
