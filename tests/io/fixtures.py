"""Builders of small image files for the io tests, with the tags each metadata convention uses."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def encode_pil(array: np.ndarray | Image.Image, fmt: str, **save: object) -> bytes:
    """Encode an array (or a PIL image) with Pillow into the bytes of a ``fmt`` file."""
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def encode_tiff(array: np.ndarray, **kwargs: object) -> bytes:
    """Encode with tifffile (any dtype, imagej/resolution/extratags passed through)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **kwargs)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, *, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    """A PNG written byte by byte (PNG spec, ISO/IEC 15948): IHDR, one IDAT (if ``rows``), IEND.

    ``rows`` are the already filtered scanlines (a 0 filter byte before each); None gives a file with no
    pixel data at all (a header that only claims a size).
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = _chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat + _chunk(b"IEND", b"")


def png16_rgb(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2) of a (H, W, 3) uint16 array, which Pillow cannot write."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)
    return raw_png(array.shape[1], array.shape[0], bit_depth=16, colour_type=2, rows=rows)


def many_page_tiff(n_pages: int) -> bytes:
    """A TIFF of ``n_pages`` pages of 1 x 1 pixel."""
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for _ in range(n_pages):
            writer.write(np.zeros((1, 1), np.uint8), contiguous=False, metadata=None)
    return buffer.getvalue()


def tiff_claiming(tmp_path: Path, *, rows: int, cols: int) -> Path:
    """A tiny 1 x 1 TIFF whose header is then rewritten to claim ``rows`` x ``cols`` pixels."""
    path = tmp_path / "claims.tif"
    tifffile.imwrite(path, np.zeros((1, 1), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tags = tif.pages[0].tags
        tags["ImageLength"].overwrite(rows)
        tags["ImageWidth"].overwrite(cols)
    return path


def append_info_bar(
    gray: np.ndarray, *, fraction: float = 0.08, scale_bar_px: int = 100, bright: bool = False
) -> np.ndarray:
    """Append a realistic SEM data bar under a (H, W) float image; the bar starts at row H.

    A flat band (black, or white if ``bright``) of ``fraction`` x H rows with anti-aliased acquisition
    text drawn by PIL.ImageDraw, a scale-bar label and a solid scale bar exactly ``scale_bar_px`` long.
    """
    from PIL import ImageDraw, ImageFont

    rows, cols = gray.shape
    height = round(rows * fraction)
    background, ink = (255, 0) if bright else (0, 255)
    bar = Image.new("L", (cols, height), background)
    draw = ImageDraw.Draw(bar)
    font = ImageFont.load_default(size=max(8, height // 3))
    draw.text((5, 3), "HV 15.00 kV  WD 10.1 mm  mag 50 000 x  HFW 5.97 um", fill=ink, font=font)
    left = cols - scale_bar_px - 10
    draw.text((left, 3), "1 um", fill=ink, font=font)
    draw.rectangle([left, height - 8, left + scale_bar_px - 1, height - 5], fill=ink)  # inclusive corners
    return np.vstack([gray, np.asarray(bar, np.float32) / 255.0])
