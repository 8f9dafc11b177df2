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

# The palette, display images and overlays live in microcnn so the CLI's PNGs and the app look the same.
from microcnn.analysis.render import IGNORE, PALETTE, colour_mask, overlay, to_display  # noqa: E402

__all__ = ["IGNORE", "PALETTE", "colour_mask", "overlay", "to_display"]


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
