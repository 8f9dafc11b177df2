"""Display helpers shared by the pages: images for the screen, overlays, legends, PNG bytes, friendly errors.

These only turn numbers that ``microcnn`` computed into pixels and widgets; no analysis happens here.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import streamlit as st

log = logging.getLogger("microcnn.app")
T = TypeVar("T")

# Colour per class index (Okabe-Ito, distinguishable with the common colour-vision deficiencies).
PALETTE = np.array(
    [
        [0, 114, 178],
        [230, 159, 0],
        [0, 158, 115],
        [204, 121, 167],
        [86, 180, 233],
        [213, 94, 0],
        [240, 228, 66],
        [0, 0, 0],
    ],
    dtype=np.uint8,
)
IGNORE = 255  # mask value for "not analysed"


def to_display(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) float in [0, 1] -> (H, W, 3) uint8 for st.image (16-bit is scaled on read)."""
    array = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.round(array[..., :3] * 255).astype(np.uint8)


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) int class indices -> (H, W, 3) uint8 colours; IGNORE (255) shows black."""
    mask = np.asarray(mask)
    out = PALETTE[np.mod(mask, len(PALETTE)).astype(np.intp)]
    out[mask == IGNORE] = 0
    return out


def overlay(pixels: np.ndarray, mask: np.ndarray, *, opacity: float = 0.5) -> np.ndarray:
    """Blend the class colours over the image: (1 - opacity) * image + opacity * colour; 255 stays image."""
    base = to_display(pixels).astype(np.float32)
    colours = colour_mask(mask).astype(np.float32)
    alpha = np.where(np.asarray(mask) == IGNORE, 0.0, float(opacity))[..., None]
    return np.round((1.0 - alpha) * base + alpha * colours).astype(np.uint8)


def legend_markdown(class_names: list[str]) -> str:
    """One coloured square per class, as HTML for st.markdown(unsafe_allow_html=True); names are escaped."""
    import html

    items = []
    for index, name in enumerate(class_names):
        r, g, b = PALETTE[index % len(PALETTE)]
        swatch = (
            f'<span style="display:inline-block;width:1em;height:1em;background:rgb({r},{g},{b})"></span>'
        )
        items.append(f"{swatch}&nbsp;{html.escape(str(name))}")
    return "&emsp;".join(items)


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) uint8/uint16 or (H, W, 3) uint8 array -> PNG file bytes (lossless)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def friendly_errors(what: str) -> Iterator[None]:
    """Show a readable message instead of a traceback; the page stays usable.

    microcnn's own errors carry a message written for people, so it is shown as is; anything else is
    logged with its traceback on the server and the user sees a short apology.
    """
    from microcnn.errors import MicrocnnError

    try:
        yield
    except MicrocnnError as exc:
        st.error(f"{what}: {exc}")
    except Exception:
        log.exception("unexpected error while %s", what)
        st.error(f"{what}: an unexpected error happened; the details are in the server log.")


def guarded(what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call ``func``; on error show the friendly message (see friendly_errors) and return None."""
    with friendly_errors(what):
        return func(*args, **kwargs)
    return None
