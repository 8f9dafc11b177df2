"""``microcnn predict``: images or folders -> predictions.csv (+ mask and overlay PNGs for segmentation)."""

from __future__ import annotations

import argparse

from microcnn.commands.predictor_options import add_model_options, add_predictor_options, build_predictor

DESCRIPTION = """\
Predict micrographs (files or folders of PNG/TIFF/JPEG/BMP/DM3/DM4) with a trained model, an ensemble,
or a classical baseline that needs no training (--method otsu | multi_otsu | adaptive_threshold | watershed).
Writes DIR/predictions.csv (one row per image: class probabilities, properties with units, or phase
fractions, each with its spread when --tta or several --model are given), and for segmentation models
DIR/<name>_mask.png (class indices) and DIR/<name>_overlay.png.
Large images are predicted tile by tile (--tile, --overlap). Exit code 3 when some files failed.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="predict images/folders into CSV + mask/overlay PNGs",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", help="image files and/or folders")
    add_model_options(parser, model_help="model file; repeat for an ensemble")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--keep-info-bar", action="store_true",
                        help="do not cut off an SEM data bar found at the bottom of an image")  # fmt: skip
    add_predictor_options(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from microcnn.inference.files import expand_inputs, predict_files

    files = expand_inputs(args.images)
    predictor = build_predictor(args)
    with tqdm(total=len(files), unit="img", desc="predict", disable=None) as bar:  # shows img/s
        rows = predict_files(predictor, files, args.out, progress=lambda done, _t: bar.update(done - bar.n),
                             crop_bar=not args.keep_info_bar)  # fmt: skip
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)}/{len(rows)} images -> {args.out}/predictions.csv")
    for r in failed:
        print(f"failed: {r['file']}: {r['error']}")
    return 3 if failed else 0
