"""``microcnn inspect ARCHIVE.h5``: summarise an HDF5 archive without loading its images.

Prints the task, image count, padded shape and dtype, true size range, class names and counts, target
names and units, pixel sizes in µm, the number of physical samples and the complete flag. ``--masks``
also counts mask pixels per class (reads every mask once, chunk by chunk); ``--json`` prints the
summary as JSON.

Examples:
  microcnn inspect seg.h5
  microcnn inspect seg.h5 --masks --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for a :func:`microcnn.io.hdf5.read_archive_info` summary."""
    px = info["pixel_size_um"]
    sizes = (
        f"{px['min']:.4g}-{px['max']:.4g} µm/px ({px['known']} known, {px['unknown']} unknown)"
        if px["known"]
        else f"unknown for all {px['unknown']} images (lengths will be in px)"
    )
    lines = [
        f"archive      {info['path']}",
        f"complete     {'yes' if info['complete'] else 'NO (writer did not finish)'}",
        f"task         {info['task']}",
        f"images       {info['count']} x {info['image_shape']} {info['image_dtype']} (padded rows, cols)",
    ]
    if "rows_range" in info:
        lines.append(
            f"true sizes   rows {info['rows_range'][0]}-{info['rows_range'][1]}, "
            f"cols {info['cols_range'][0]}-{info['cols_range'][1]} px"
        )
    lines.append(f"pixel size   {sizes}")
    if info.get("class_names"):
        lines.append(f"classes      {', '.join(info['class_names'])}")
    for key, title in (("label_counts", "images per class"), ("mask_pixel_counts", "mask px per class")):
        if key in info:
            lines.append(f"{title}: " + ", ".join(f"{k}={v}" for k, v in info[key].items()))
    if info.get("target_names"):
        pairs = zip(info["target_names"], info["target_units"], strict=False)
        lines.append("targets      " + ", ".join(f"{n} [{u or '-'}]" for n, u in pairs))
    if info.get("samples"):
        lines.append(f"samples      {info['samples']} distinct sample ids")
    elif "samples" in info:
        lines.append("samples      no sample ids (each image is its own group in splits)")
    if info.get("extra"):
        lines.append(f"extra        {json.dumps(info['extra'], ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from microcnn.io.hdf5 import open_archive

    with open_archive(args.archive, require_complete=False) as archive:
        info = dict(archive.info)
        if args.masks and "masks" in info["datasets"]:
            from tqdm import tqdm

            with tqdm(total=len(archive), unit="img", desc="masks") as bar:
                counts = archive.mask_counts(progress=lambda done, total: bar.update(done - bar.n))
            info["mask_pixel_counts"] = counts
    print(json.dumps(info, indent=1, default=list) if args.json else format_info(info))
    return 0 if info["complete"] else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="summarise an HDF5 archive (counts, shapes, classes, pixel sizes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("archive", help="an .h5 archive made by 'microcnn pack' or 'microcnn synth'")
    p.add_argument("--masks", action="store_true", help="count mask pixels per class (reads every mask)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
