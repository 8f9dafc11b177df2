"""Gatan Digital Micrograph (DM3/DM4) images through RosettaSciIO, an optional extra (``microcnn[dm]``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from microcnn.errors import CorruptFileError, MissingExtraError, UnsupportedFormatError

INSTALL_HINT = "pip install 'microcnn[dm]'"


def _file_reader() -> Any:
    try:
        from rsciio.digitalmicrograph import file_reader
    except ImportError:
        raise MissingExtraError(
            "Reading DM3/DM4 files needs the optional package RosettaSciIO, which is not installed. "
            f"Install it with: {INSTALL_HINT} (or export the image as TIFF in Digital Micrograph)."
        ) from None
    return file_reader


def read_dm(fh: BinaryIO, path: Path | None, *, max_pixels: int) -> dict[str, Any]:
    """Decode a DM3/DM4 file; its shape is checked against ``max_pixels`` before the data is read.

    RosettaSciIO reads from a path, so bytes and file objects go through a temporary file.
    Returns the decoded dict read_micrograph expects: array (H, W[, C]) in the stored dtype, pixel size
    in µm from the DM calibration (``pixel_size_source`` "dm") and the page count (always 1).
    """
    file_reader = _file_reader()
    if path is not None:
        return _read_path(file_reader, path, max_pixels=max_pixels)
    with tempfile.TemporaryDirectory(prefix="microcnn-dm-") as folder:
        temp = Path(folder) / "upload.dm4"
        with open(temp, "wb") as out:
            while chunk := fh.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return _read_path(file_reader, temp, max_pixels=max_pixels)


def _read_path(file_reader: Any, path: Path, *, max_pixels: int) -> dict[str, Any]:
    from microcnn.io.images import check_pixel_budget
    from microcnn.io.metadata import pixel_size_from_dm_axes

    try:  # lazy: the data stays on disk (dask) until the shape has passed the budget
        signals = file_reader(str(path), lazy=True)
    except Exception as exc:  # rsciio raises many kinds on damaged files
        raise CorruptFileError(
            f"The DM3/DM4 file is damaged or not readable by RosettaSciIO ({exc}). Re-export it."
        ) from None
    images = [s for s in signals if len(getattr(s["data"], "shape", ())) in (2, 3)]
    if not images:
        raise UnsupportedFormatError("The DM file holds no 2-D image (spectra only?); microcnn reads images.")
    signal = images[0]
    shape = tuple(signal["data"].shape)
    if len(shape) == 3 and shape[-1] not in (3, 4):
        raise UnsupportedFormatError(
            f"The DM file holds a stack of shape {shape}; microcnn reads one 2-D image. Export one frame."
        )
    check_pixel_budget(shape[0], shape[1], max_pixels=max_pixels)
    try:
        array = signal["data"].compute() if hasattr(signal["data"], "compute") else signal["data"]
    except Exception as exc:
        raise CorruptFileError(f"The DM3/DM4 image data is truncated or damaged ({exc}).") from None
    axes = signal.get("axes", [])
    size = pixel_size_from_dm_axes([a for a in axes if a.get("navigate") is not True][:2])
    return {
        "array": array,
        "bit_depth": int(array.dtype.itemsize * 8),
        "n_pages": 1,
        "pixel_size_um": size,
        "pixel_size_source": "dm" if size is not None else None,
        "instrument": {"vendor": "Gatan Digital Micrograph"},
    }
