"""``microcnn pack FOLDER OUT.h5``: convert a dataset folder into one HDF5 archive.

The folder follows a layout of data/README.md (images/ + masks/, class subfolders, images/ + labels.csv,
images/ + targets.csv; optional dataset.json and samples.csv). Pixel values are stored losslessly
(8-bit as uint8, 16-bit as uint16), images of different sizes are padded with their true size recorded,
and the archive is written atomically (a temporary file renamed when complete).

Examples:
  microcnn pack data/seg seg.h5
  microcnn pack ../shared/data/uhcs_seg24 uhcs.h5 --task segmentation \\
      --samples-csv ../shared/data/uhcs_seg24/metadata.csv --group-column sample_label \\
      --pixel-size-column um_per_px
  microcnn pack data/reg reg.h5 --target-units 1 µm       # porosity (fraction), mean diameter (µm)
"""

from __future__ import annotations

import argparse

TASKS = ("classification", "segmentation", "regression")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from microcnn.commands.inspect import format_info
    from microcnn.data.pack import pack_folder

    options = {
        "group_column": args.group_column,
        "pixel_size_column": args.pixel_size_column,
        "as_gray": True if args.as_gray else None,
    }
    if args.samples_csv:
        options["samples_csv"] = args.samples_csv
    if args.target_units is not None:
        options["target_units"] = args.target_units
    with tqdm(unit="img", desc="pack") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        info = pack_folder(
            args.folder,
            args.out,
            task=args.task,
            image_dtype=None if args.image_dtype == "auto" else args.image_dtype,
            overwrite=args.overwrite,
            progress=progress,
            **options,
        )
    print(format_info(info))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack",
        help="convert a dataset folder into an HDF5 archive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="dataset folder (layouts in data/README.md)")
    p.add_argument("out", help="archive to write (.h5); refused if it exists unless --overwrite")
    p.add_argument("--task", choices=TASKS, help="default: dataset.json 'task', else guessed from the layout")
    p.add_argument("--samples-csv", help="table with sample ids and pixel sizes (default FOLDER/samples.csv)")
    p.add_argument("--group-column", default="sample_id", help="its sample-id column (default sample_id)")
    p.add_argument(
        "--pixel-size-column", default="pixel_size_um", help="its µm-per-pixel column (default pixel_size_um)"
    )
    p.add_argument(
        "--image-dtype",
        choices=("auto", "uint8", "uint16", "float32"),
        default="auto",
        help="storage dtype (default auto: the smallest that keeps every image exact)",
    )
    p.add_argument(
        "--target-units",
        nargs="+",
        metavar="UNIT",
        help="units of the regression targets, one per targets.csv column in order (e.g. 1 µm); "
        "overrides dataset.json 'target_units'",
    )
    p.add_argument("--as-gray", action="store_true", help="store colour images as gray (BT.709 luminance)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)
