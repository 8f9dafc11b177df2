"""``microcnn evaluate MODEL DATA``: metrics of a saved model on a dataset folder or .h5 archive.

Examples:
  microcnn evaluate runs/seg/model.safetensors data/samples/segmentation
  microcnn evaluate runs/cls/model.safetensors test.h5 --json
  microcnn evaluate runs/seg/model.safetensors data/samples/segmentation --tta
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from microcnn.commands.train import summary_table
    from microcnn.engine.api import evaluate

    with tqdm(desc="evaluating", unit="batch", leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        out = evaluate(
            args.model,
            args.data,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
            tta=args.tta,
        )
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    matrix = out.pop("confusion_matrix", None)
    print(summary_table(out, f"{args.model} on {args.data}"))
    if matrix is not None:
        print("confusion matrix (rows = true, cols = predicted):")
        for row in matrix:
            print("  " + " ".join(f"{v:>8d}" for v in row))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of a saved model on a dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model.safetensors written by microcnn train")
    p.add_argument("data", help="dataset folder or .h5 archive of the same task")
    p.add_argument("--batch-size", type=int, default=1, help="images per batch (default 1: any image size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--tta", action="store_true", help="score the average over the 8 flips/rotations (8x the compute)"
    )
    p.set_defaults(func=run)
