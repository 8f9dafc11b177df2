"""Read a micrograph (PNG, JPEG, BMP, TIFF, DM3/DM4) from a path, bytes or a binary file object.

The decoder is chosen by the file's magic bytes, never by its extension. Sizes are checked from the
header before any pixel is decoded, so a small file that claims a huge image is refused at once.
Every failure on bad input is a :class:`~microcnn.errors.MicrographError` subclass with a message that
says what came, what was expected and what to do.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from microcnn.errors import (
    CorruptFileError,
    DegenerateImageError,
    ImageTooLargeError,
    MicrographError,
    UnsupportedFormatError,
)
from microcnn.io.micrograph import Micrograph

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

SUPPORTED = "PNG, JPEG, BMP, TIFF (8/16/32-bit integer or float, multi-page) and DM3/DM4"

# Magic bytes -> our format name. DM3/DM4 files start with their version as a big-endian int32.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"\x00\x00\x00\x03", "dm"),
    (b"\x00\x00\x00\x04", "dm"),
    (b"BM", "bmp"),
)
# Formats we recognise only to name them in the refusal message.
OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"SIMPLE  =", "FITS"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x01\x00", "Windows icon (ICO)"),
    (b"GIF8", "GIF"),
    (b"RIFF", "RIFF (WebP/AVI)"),
    (b"\x89HDF\r\n\x1a\n", "HDF5"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP (e.g. a .docx or an archive)"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)


class MicrographNotFoundError(MicrographError, FileNotFoundError):
    """The path given to read_micrograph does not exist or is not a file."""


class PageOutOfRangeError(MicrographError, IndexError):
    """The requested page of a multi-page file does not exist."""


def read_micrograph(
    source: Source,
    *,
    page: int = 0,
    pixel_size_um: float | None = None,
    as_gray: bool | None = None,
    max_pixels: int = 100_000_000,
    max_pages: int = 10_000,
) -> Micrograph:
    """Read one micrograph into a :class:`Micrograph` with pixels as float32 in [0, 1].

    Args:
        source: a path, the file's bytes (e.g. a browser upload) or a seekable binary file object.
        page: page (0-based) of a multi-page TIFF; other formats have only page 0.
        pixel_size_um: edge length of one pixel in µm; overrides any value found in the metadata
            (``meta["pixel_size_source"] == "user"``).
        as_gray: colour rule, see below.
        max_pixels: refuse images with more than this many pixels (rows x columns), read from the
            header before decoding.
        max_pages: refuse files with more pages than this.

    Intensity scaling: unsigned integers are divided by the dtype maximum (uint8 / 255, uint16 / 65535,
    so 65535 -> 1.0 and 255 and 256 stay distinct); signed integers (e.g. int32) map the dtype range
    [min, max] onto [0, 1]; bilevel images give 0 and 1. Floats already in [0, 1] are kept; other
    floats are min-max scaled into [0, 1] and the original range is stored in ``meta["value_range"]``.
    Floats with NaN or inf are refused (DegenerateImageError): fix them at export, nothing is guessed.

    Colour rule: ``as_gray=None`` turns an RGB(A) image whose colour channels are all equal (SEM images
    saved as RGB) into (H, W) with no loss and keeps true colour as (H, W, 3); ``as_gray=True`` gives the
    luminance of skimage.color.rgb2gray (ITU-R BT.709: 0.2125 R + 0.7154 G + 0.0721 B); ``as_gray=False``
    keeps the channels. An alpha channel is always dropped and ``meta["alpha_dropped"]`` is True.
    ``meta["gray_rule"]`` records which rule turned colour into gray. Palette images (PNG, BMP, TIFF)
    give intensities: the palette is applied (``meta["palette_applied"]``), then the colour rule. The
    orientation tag is applied (EXIF 0x0112 in PNG/JPEG, the same tag 274 in TIFF), so pixels are in
    display orientation (``meta["exif_orientation_applied"]`` holds the value 2..8 when it changed them).

    Returns:
        Micrograph with pixels (H, W) or (H, W, 3) float32 in [0, 1], pixel_size_um (µm or None),
        source_dtype, bit_depth and meta ("format", "source_name", "page", "n_pages",
        "pixel_size_source", "instrument", "shape_original", ...).

    Example:
        >>> m = read_micrograph("uhcs0001.tif", pixel_size_um=0.12)   # doctest: +SKIP
        >>> m.pixels.shape, m.unit
        ((484, 645), 'µm')
    """
    _check_options(page=page, max_pixels=max_pixels, max_pages=max_pages)
    fh, name, path = _open_source(source)
    try:
        fmt = sniff_format(fh.read(16))
        fh.seek(0)
        decoded = _decode(fmt, fh, path, page=page, max_pixels=max_pixels, max_pages=max_pages)
    finally:
        if path is not None:
            fh.close()
    return _finish(decoded, fmt=fmt, name=name, page=page, as_gray=as_gray, pixel_size_um=pixel_size_um)


def _check_options(*, page: int, max_pixels: int, max_pages: int) -> None:
    for label, value, low in (("page", page, 0), ("max_pixels", max_pixels, 1), ("max_pages", max_pages, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}; got {value!r}.")


def _open_source(source: Source) -> tuple[BinaryIO, str | None, Path | None]:
    """A seekable binary handle, the file name (if known) and the path (if the source is a file)."""
    if isinstance(source, bytes | bytearray | memoryview):
        fh: BinaryIO = io.BytesIO(bytes(source))
        name, path = None, None
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise MicrographNotFoundError(f"Cannot read micrograph: '{path}' {what}. Check the path.")
        fh, name = path.open("rb"), path.name
    elif hasattr(source, "read"):
        fh, name, path = source, getattr(source, "name", None), None
        if not (hasattr(fh, "seekable") and fh.seekable()):
            fh = io.BytesIO(fh.read())
        name = Path(name).name if isinstance(name, str) else None
    else:
        raise TypeError(f"source must be a path, bytes or a binary file object; got {type(source).__name__}.")
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    if size == 0:
        if path is not None:
            fh.close()
        raise CorruptFileError(f"The file {name or '(upload)'} is empty (0 bytes); nothing to read.")
    return fh, name, path


def sniff_format(head: bytes) -> str:
    """Format name ("png", "jpeg", "bmp", "tiff", "dm") from the first bytes of a file.

    Raises UnsupportedFormatError naming the format when it is a known other one (FITS, PSD, ...).
    """
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    for magic, other in OTHER_MAGIC:
        if head.startswith(magic):
            raise UnsupportedFormatError(
                f"This file is {other}, which microcnn does not read. Supported: {SUPPORTED}. "
                "Export the image as TIFF (16-bit if the detector has more than 8 bits) or PNG."
            )
    raise UnsupportedFormatError(
        f"The file content is not a recognised image format (first bytes {head[:8].hex(' ')}). "
        f"Supported: {SUPPORTED}. The file may be damaged, or not an image despite its name."
    )


def check_pixel_budget(rows: int, cols: int, *, max_pixels: int, what: str = "image") -> None:
    """Refuse 0-size images and images over ``max_pixels`` (rows x cols), before decoding."""
    if rows <= 0 or cols <= 0:
        raise DegenerateImageError(
            f"The {what} has {rows} x {cols} pixels (rows x columns): there is nothing to analyse."
        )
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"The {what} is {rows} x {cols} pixels (rows x columns) = {rows * cols:,} px, over the budget "
            f"of {max_pixels:,} px. Crop or bin it, or raise max_pixels if you trust the file."
        )


def _decode(fmt: str, fh: BinaryIO, path: Path | None, **limits: int) -> dict[str, Any]:
    page, max_pixels = limits["page"], limits["max_pixels"]
    if fmt == "tiff":
        return _read_tiff(fh, page=page, max_pixels=max_pixels, max_pages=limits["max_pages"])
    if page != 0:
        raise PageOutOfRangeError(f"Page {page} was asked for, but a {fmt.upper()} file has only page 0.")
    if fmt == "dm":
        from microcnn.io.dm import read_dm

        return read_dm(fh, path, max_pixels=max_pixels)
    return _read_pillow(fh, fmt, max_pixels=max_pixels)


def _corrupt(fmt: str, exc: BaseException) -> MicrographError:
    """Turn a decoder's exception into a message for a person; missing codecs are 'unsupported'."""
    text = str(exc) or type(exc).__name__
    if "imagecodecs" in text:
        return UnsupportedFormatError(
            f"This {fmt.upper()} uses a compression that needs the optional package 'imagecodecs' ({text}). "
            "Install it (pip install imagecodecs) or save the image uncompressed, LZW or Deflate."
        )
    return CorruptFileError(
        f"The {fmt.upper()} file is damaged or truncated and cannot be decoded ({text}). "
        "Copy it again from the instrument, or re-export it."
    )


# ----------------------------------------------------------------------------------------------- Pillow
# Our format name -> the one Pillow plugin allowed to decode it (the allow-list: nothing else is tried).
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}
_PILLOW_BITS = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


def _open_pillow(fh: BinaryIO, fmt: str) -> Any:
    """Open ``fh`` (header only) with the single Pillow plugin of ``fmt``.

    ``Image.open`` would also apply Pillow's global decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``,
    an error above ~179 Mpx) and so overrule a caller's larger ``max_pixels``. The budget is ours: it is
    checked from this header right after, so the plugin is called the way ``Image.open`` calls it, minus
    that check, and no global setting is touched (safe with concurrent app sessions).
    """
    from PIL import Image

    name = PILLOW_FORMATS[fmt]
    Image.preinit()  # registers the PNG, JPEG and BMP plugins
    factory, _accept = Image.OPEN[name]  # the format was already chosen by magic bytes (sniff_format)
    try:
        return factory(fh, "")
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise _corrupt(fmt, exc) from None


def _read_pillow(fh: BinaryIO, fmt: str, *, max_pixels: int) -> dict[str, Any]:
    from PIL import ImageOps

    im = _open_pillow(fh, fmt)  # reads the header only; the pixels are decoded by load() below
    check_pixel_budget(im.height, im.width, max_pixels=max_pixels)
    if fmt == "png":
        _check_png_plausible(fh, rows=im.height, cols=im.width)
        if _is_16bit_colour_png(fh):
            return _read_png16_colour(fh)
    try:
        im.load()
        orientation = int(im.getexif().get(0x0112, 1))
        im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _corrupt(fmt, exc) from None
    array, extra = _pillow_array(im)
    if orientation != 1:
        extra["exif_orientation_applied"] = orientation
    return {"array": array, "bit_depth": _PILLOW_BITS.get(im.mode, 8), "n_pages": 1, "extra": extra}


def _pillow_array(im: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels of a loaded Pillow image as numpy, with palettes applied and exotic modes made RGB."""
    extra: dict[str, Any] = {}
    if im.mode in ("P", "PA"):  # a palette image: give intensities (the palette), never the indices
        has_alpha = im.mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        extra["palette_applied"] = True
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        extra["converted_from"] = im.mode
        im = im.convert("LA" if im.mode == "La" else "RGB")
    return np.asarray(im), extra


def _check_png_plausible(fh: BinaryIO, *, rows: int, cols: int) -> None:
    """Refuse a PNG too small to hold the size it claims (deflate compresses at most 1032:1)."""
    fh.seek(24)  # IHDR: bit depth, colour type -> bits per pixel (PNG spec table 11.1)
    bit_depth, colour_type = fh.read(2)
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    bits = bit_depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour_type, 1)
    raw_bytes = rows * (-(-cols * bits // 8) + 1)  # scanlines, each with its filter byte
    if raw_bytes > 1032 * size + 4096:
        raise CorruptFileError(
            f"The PNG claims {rows} x {cols} pixels but holds only {size} bytes, less than any encoder "
            "could store them in: the file is truncated or damaged. Re-export it."
        )


def _is_16bit_colour_png(fh: BinaryIO) -> bool:
    """True for 16-bit RGB, RGBA or gray+alpha PNGs, which Pillow would silently reduce to 8 bits."""
    fh.seek(24)  # IHDR data: width(4) height(4) at 16, then bit depth and colour type
    bit_depth, colour_type = fh.read(2)
    fh.seek(0)
    return bit_depth == 16 and colour_type in (2, 4, 6)


def _read_png16_colour(fh: BinaryIO) -> dict[str, Any]:
    # Pillow has no 16-bit colour mode, so OpenCV (already installed with albumentations) decodes these.
    import cv2

    array = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise CorruptFileError("The 16-bit colour PNG is damaged or truncated; re-export it.")
    if array.ndim == 3:  # OpenCV orders channels BGR(A)
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]
    return {"array": array, "bit_depth": 16, "n_pages": 1, "extra": {}}


# ------------------------------------------------------------------------------------------------- TIFF
_TIFF_TAGS = (272, 282, 296, 305, 34118, 34680, 34682, 50431)  # model, resolution, software, SEM vendors


def _read_tiff(fh: BinaryIO, *, page: int, max_pixels: int, max_pages: int) -> dict[str, Any]:
    import tifffile

    from microcnn.io.metadata import instrument_summary, pixel_size_from_tiff_tags

    try:
        tif = tifffile.TiffFile(fh)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error ... on bad headers
        raise _corrupt("tiff", exc) from None
    with tif:
        n_pages = _count_pages(tif, max_pages=max_pages)
        if page >= n_pages:
            raise PageOutOfRangeError(
                f"Page {page} was asked for; this TIFF has {n_pages} pages (0 to {n_pages - 1})."
            )
        tpage = tif.pages[page]
        axes = _tiff_axes(tpage, max_pixels=max_pixels)
        try:
            array = tpage.asarray()
        except Exception as exc:  # truncated strips, broken compression streams, missing codecs
            raise _corrupt("tiff", exc) from None
        tags = {tag.code: tag.value for tag in tpage.tags.values() if tag.code in _TIFF_TAGS}
        try:  # a damaged tag costs the pixel size, never the image
            size, source = pixel_size_from_tiff_tags(tags, imagej=tif.imagej_metadata)
        except Exception:
            size, source = None, None
        array, bits, extra = _tiff_pixels(tpage, array, axes)
    return {
        "array": array,
        "bit_depth": bits,
        "n_pages": n_pages,
        "pixel_size_um": size,
        "pixel_size_source": source,
        "instrument": instrument_summary(tags),
        "extra": extra,
    }


def _tiff_pixels(tpage: Any, array: np.ndarray, axes: str) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Decoded samples of a TIFF page -> (H, W[, C]) intensities in display orientation, bit depth, meta.

    Planar (SYX) samples are moved last; a palette page gives its colours (the colormap applied, see
    :func:`_apply_colormap`); the Orientation tag (274, the same tag as EXIF 0x0112) is applied.
    """
    if axes == "SYX":  # planar configuration: samples first
        array = np.moveaxis(array, 0, -1)
    bits = tpage.bitspersample
    bits = bits if isinstance(bits, int) else array.dtype.itemsize * 8
    extra: dict[str, Any] = {}
    if int(tpage.photometric) == PHOTOMETRIC_PALETTE:
        array = _apply_colormap(array, tpage.colormap)
        bits, extra["palette_applied"] = array.dtype.itemsize * 8, True
    orientation = int(tpage.tags.valueof(274, 1) or 1)
    if orientation in _ORIENT:
        array, extra["exif_orientation_applied"] = _ORIENT[orientation](array), orientation
    return array, bits, extra


PHOTOMETRIC_PALETTE = 3  # TIFF 6.0, PhotometricInterpretation "RGB Palette"


def _apply_colormap(indices: np.ndarray, colormap: Any) -> np.ndarray:
    """Palette indices (H, W) -> colours (H, W, 3) through the TIFF colormap (3, 2**bits).

    TIFF 6.0 stores colormap entries as 16-bit (0..65535), so the colours are uint16 and later scaled by
    65535. Some writers store 8-bit entries (all <= 255) instead; those are taken as uint8 (scaled by 255),
    the rule tifffile itself used for ``asrgb``.
    """
    cmap = np.asarray(colormap) if colormap is not None else np.zeros((0, 0))
    if cmap.ndim != 2 or cmap.shape[0] != 3 or indices.ndim != 2 or indices.dtype.kind != "u":
        raise CorruptFileError(
            f"This palette TIFF has a damaged colormap (shape {cmap.shape}) or non-index samples "
            f"({indices.dtype}, shape {indices.shape}); re-export it as gray or RGB."
        )
    if indices.size and int(indices.max()) >= cmap.shape[1]:
        raise CorruptFileError(
            f"This palette TIFF uses colour index {int(indices.max())} but its colormap has only "
            f"{cmap.shape[1]} entries; the file is damaged. Re-export it as gray or RGB."
        )
    cmap = cmap.astype(np.uint8) if int(cmap.max(initial=0)) <= 255 else cmap.astype(np.uint16)
    return np.moveaxis(cmap[:, indices], 0, -1)


# Orientation tag value (TIFF 274 = EXIF 0x0112) -> stored raster to display raster, on (rows, cols[, C]).
# Same mapping as PIL.ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
# 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, k=1),
}


def _count_pages(tif: Any, *, max_pages: int) -> int:
    """Page count via tifffile's lazy page list (walks IFD offsets only: ~12 ms for 20,000 pages)."""
    try:
        n_pages = len(tif.pages)
    except Exception as exc:
        raise _corrupt("tiff", exc) from None
    if n_pages == 0:
        raise CorruptFileError("The TIFF file contains no image page.")
    if n_pages > max_pages:
        raise ImageTooLargeError(
            f"The TIFF has {n_pages} pages, over the limit of {max_pages}. Split the stack, or raise "
            "max_pages if you trust the file."
        )
    return n_pages


def _tiff_axes(tpage: Any, *, max_pixels: int) -> str:
    """Check a TIFF page's geometry from its header (before decoding); return its axes string."""
    axes, shape = str(tpage.axes), tuple(tpage.shape)
    if not all(isinstance(n, int | np.integer) for n in shape):
        raise CorruptFileError(f"The TIFF header is damaged (image shape {shape}); re-export the image.")
    if axes not in ("YX", "YXS", "SYX"):
        raise UnsupportedFormatError(
            f"This TIFF page has axes {axes} with shape {shape}; microcnn reads 2-D images with optional "
            "colour samples (YX, YXS). Export single 2-D images (one page per image)."
        )
    check_pixel_budget(shape[axes.index("Y")], shape[axes.index("X")], max_pixels=max_pixels)
    return axes


# ----------------------------------------------------------------------------- intensities and colour
def scale_intensities(array: np.ndarray) -> tuple[np.ndarray, list[float] | None]:
    """Stored samples -> float32 in [0, 1] by the documented rule; returns (pixels, original float range).

    uint: / dtype max; int: dtype range onto [0, 1]; bool: 0/1; float in [0, 1]: kept; other float:
    min-max scaled, and the second value is [min, max] (a constant image becomes all 0). NaN/inf floats
    raise DegenerateImageError.
    """
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.float32), None
    if kind == "u":
        return (array / np.float64(np.iinfo(array.dtype).max)).astype(np.float32), None
    if kind == "i":
        info = np.iinfo(array.dtype)
        return ((array - np.float64(info.min)) / (float(info.max) - float(info.min))).astype(np.float32), None
    if kind != "f":
        raise UnsupportedFormatError(f"Samples of type {array.dtype} are not supported; use ints or floats.")
    _check_finite(array)
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return array.astype(np.float32), None
    span = high - low
    if span <= 0:
        return np.zeros(array.shape, np.float32), [low, high]
    # a span wider than float32 can hold (values near +-3.4e38) would overflow to inf: work in float64 then
    work = array.astype(np.float64) if span > float(np.finfo(np.float32).max) else array
    return np.clip((work - low) / span, 0.0, 1.0).astype(np.float32), [low, high]


def _check_finite(array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if n_bad:
        first = tuple(int(i) for i in np.argwhere(bad)[0][:2])
        raise DegenerateImageError(
            f"The image contains {n_bad} non-finite values (NaN or ±inf) out of {array.size}, the first at "
            f"(row, column) {first}. microcnn does not guess replacements: fix them where the image was "
            "made (e.g. Fiji: Process > Math > Remove NaNs) and save again."
        )


GRAY_RULE_LUMINANCE = "luminance ITU-R BT.709 (skimage.color.rgb2gray: 0.2125 R + 0.7154 G + 0.0721 B)"
GRAY_RULE_EQUAL = "R = G = B: one channel kept, no loss"


def apply_colour_rule(pixels: np.ndarray, *, as_gray: bool | None) -> tuple[np.ndarray, dict[str, Any]]:
    """(H, W) or (H, W, C) float32 -> (H, W) or (H, W, 3) by the rule in read_micrograph; returns meta."""
    meta: dict[str, Any] = {}
    if pixels.ndim == 2:
        return pixels, meta
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise UnsupportedFormatError(f"The image has {channels} channels; microcnn reads gray, RGB or RGBA.")
    if channels in (2, 4):
        pixels, meta["alpha_dropped"] = pixels[..., :-1], True
    if pixels.shape[2] == 1:
        return pixels[..., 0], meta
    if (
        as_gray is None
        and np.array_equal(pixels[..., 0], pixels[..., 1])
        and np.array_equal(pixels[..., 0], pixels[..., 2])
    ):
        meta["gray_rule"] = GRAY_RULE_EQUAL
        return pixels[..., 0], meta
    if as_gray:
        from skimage.color import rgb2gray

        meta["gray_rule"] = GRAY_RULE_LUMINANCE
        return rgb2gray(pixels).astype(np.float32), meta
    return pixels, meta


def _finish(decoded: dict[str, Any], *, fmt: str, name: str | None, page: int, **options: Any) -> Micrograph:
    from microcnn.io.metadata import check_pixel_size_um

    raw = np.asarray(decoded["array"])
    if raw.size == 0 or raw.ndim not in (2, 3):
        raise CorruptFileError(f"The {fmt.upper()} decoded to an empty or malformed array {raw.shape}.")
    pixels, value_range = scale_intensities(raw)
    pixels, colour_meta = apply_colour_rule(pixels, as_gray=options["as_gray"])
    size, source = decoded.get("pixel_size_um"), decoded.get("pixel_size_source")
    meta: dict[str, Any] = {
        "format": fmt,
        "source_name": name,
        "page": page,
        "n_pages": decoded["n_pages"],
        "shape_original": list(raw.shape),
        "instrument": decoded.get("instrument", {}),
        **decoded.get("extra", {}),
        **colour_meta,
    }
    if value_range is not None:
        meta["value_range"] = value_range
    if options["pixel_size_um"] is not None:
        meta["pixel_size_file_um"] = size
        size, source = check_pixel_size_um(options["pixel_size_um"]), "user"
    meta["pixel_size_source"] = source
    return Micrograph(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        pixel_size_um=size,
        source_dtype=str(raw.dtype),
        bit_depth=int(decoded["bit_depth"]),
        meta=meta,
    )
