"""The Predictor options shared by ``predict`` and ``predict-h5`` (one definition, one set of defaults)."""

from __future__ import annotations

import argparse
from typing import Any

from microcnn.errors import MicrocnnError

TILE = 1024  # = Predictor's default: an image up to this side goes through in one pass
BATCH = 2
METHODS = ("cnn", "otsu", "multi_otsu", "adaptive_threshold", "watershed")  # cnn = the --model file(s)


def add_predictor_options(parser: argparse.ArgumentParser, *, rescale: bool = True) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps (default auto)")
    parser.add_argument("--tile", type=int, default=TILE, help=f"tile side in px for large images ({TILE})")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (0.25)")
    parser.add_argument("--batch-size", type=int, default=BATCH, help=f"tiles per forward pass ({BATCH})")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: 8 flips/rotations")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="NCHW convolutions (default channels_last: faster on CPUs)")  # fmt: skip
    if rescale:
        parser.add_argument("--rescale", action="store_true", help="resample to the training pixel size")


def add_model_options(parser: argparse.ArgumentParser, *, model_help: str) -> None:
    """--model (repeatable) or a classical --method that needs no model (with --classes, --invert)."""
    parser.add_argument("--model", action="append", metavar="M.safetensors", help=model_help)
    parser.add_argument("--method", choices=METHODS, default="cnn",
                        help="cnn (the --model files, default) or a classical baseline that needs no "
                             "training: otsu, multi_otsu (--classes K), adaptive_threshold, watershed "
                             "(touching particles split)")  # fmt: skip
    parser.add_argument("--classes", type=int, default=3, help="phases for --method multi_otsu (3)")
    parser.add_argument("--invert", action="store_true",
                        help="classical two-phase methods: dark phase = class 1 (e.g. pores)")  # fmt: skip


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :class:`microcnn.inference.predictor.Predictor` given on the command line."""
    options = {"device": args.device, "tile": args.tile, "overlap": args.overlap,
               "batch_size": args.batch_size, "tta": args.tta,
               "channels_last": args.channels_last}  # fmt: skip
    if hasattr(args, "rescale"):
        options["rescale"] = args.rescale
    return options


def model_source(args: argparse.Namespace) -> Any:
    """The --model paths (list), or a ClassicalPredictor for a classical --method (nothing loaded yet).

    Raises:
        MicrocnnError: neither or both of --model and a classical --method were given.
    """
    method = getattr(args, "method", "cnn")
    if method == "cnn":
        if not args.model:
            raise MicrocnnError("Give --model M.safetensors (repeat it for an ensemble), or a classical "
                                f"--method ({', '.join(METHODS[1:])}) that needs no model.")  # fmt: skip
        return list(args.model)
    if args.model:
        raise MicrocnnError(f"--method {method} needs no model; drop --model, or use --method cnn.")
    from microcnn.inference.classical import ClassicalPredictor

    return ClassicalPredictor(method, classes=args.classes, invert=args.invert)


def build_predictor(args: argparse.Namespace) -> Any:
    """A Predictor loaded from the --model files, or the ClassicalPredictor of a classical --method."""
    source = model_source(args)
    if not isinstance(source, list):
        return source
    from microcnn.inference.predictor import Predictor

    return Predictor.from_checkpoint(source, **predictor_options(args))
