"""Pixel size from instrument metadata: small pure functions, one per convention, each returning µm.

Every function takes what the file carries (a tag value as text or as the dict tifffile already parsed)
and returns the edge length of one pixel in micrometres, or ``None`` when that convention is absent or
says nothing usable. Units are explicit everywhere: a value without a known unit is never guessed.

Conventions covered:
    - ImageJ TIFF: ``unit=`` in the ImageDescription and XResolution = pixels per unit.
    - TIFF resolution tags: XResolution with ResolutionUnit (2 = inch, 3 = centimetre).
    - Thermo Fisher / FEI SEM: ``[Scan]`` section, ``PixelWidth`` in metres (tag 34682 FEI_HELIOS or 34680).
    - Zeiss SmartSEM: tag 34118 (CZ_SEM), entry "Image Pixel Size = 2.5 nm".
    - TESCAN: tag 50431 text with ``PixelSizeX=`` in metres.
    - Digital Micrograph (via RosettaSciIO): axes with ``scale`` and ``units``.
"""

from __future__ import annotations

import configparser
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from microcnn.errors import MicrographError

# Length of one unit in micrometres. Keys are lower-case; "µ" (micro sign) and "μ" (Greek mu) both appear.
UNIT_TO_UM: dict[str, float] = {
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "Å": 1e-4,
    "angstrom": 1e-4,
}

# Dots-per-inch values that image software writes by default. They describe a screen or a printer, not
# the specimen, so a TIFF/PNG resolution equal to one of them is ignored rather than read as 254 µm/px.
DEFAULT_DPI = (1.0, 72.0, 96.0, 150.0, 200.0, 300.0, 600.0, 1200.0)

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class PixelSizeError(MicrographError):
    """A pixel size (given by the user or found in a file) is not a positive, finite length."""


def unit_to_um(unit: str) -> float:
    """Micrometres per one ``unit`` (e.g. "nm" -> 1e-3). Raises PixelSizeError for an unknown unit."""
    key = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    factor = UNIT_TO_UM.get(key) or UNIT_TO_UM.get(key.lower())
    if factor is None:
        known = ", ".join(sorted({k for k in UNIT_TO_UM if len(k) <= 2}))
        raise PixelSizeError(f"Unknown length unit '{unit}'. Expected one of: {known} (or micron, angstrom).")
    return factor


def to_um(value: float, unit: str) -> float:
    """Convert a length ``value`` in ``unit`` to micrometres. Example: ``to_um(2.5, "nm") == 0.0025``."""
    return float(value) * unit_to_um(unit)


def check_pixel_size_um(value: Any, *, source: str = "user") -> float:
    """Return ``value`` as float when it is a positive finite length in µm; else raise PixelSizeError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0:
        raise PixelSizeError(
            f"Pixel size from {source} must be a positive number of micrometres per pixel; got {value!r}. "
            "Give it in µm, e.g. pixel_size_um=0.05 for 50 nm per pixel."
        )
    return number


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _resolution_value(resolution: Any) -> float | None:
    """A TIFF RATIONAL (numerator, denominator), a Fraction or a number -> float, or None."""
    if resolution is None:
        return None
    if isinstance(resolution, Sequence) and len(resolution) == 2:
        numerator, denominator = resolution
        return float(numerator) / float(denominator) if denominator else None
    return float(resolution)


def pixel_size_from_resolution(x_resolution: Any, resolution_unit: int | str | None) -> float | None:
    """Pixel size in µm from TIFF XResolution (pixels per unit) and ResolutionUnit (2 inch, 3 cm).

    ResolutionUnit 1 ("none") carries no length. Common software defaults (72, 96, 300 ... dpi, see
    ``DEFAULT_DPI``) are ignored for inches: they would claim 352.8 µm/px for every screenshot.
    Example: 10,000 pixels per cm -> 1.0 µm.
    """
    pixels_per_unit = _positive(_resolution_value(x_resolution))
    unit = {2: "inch", 3: "centimeter", "inch": "inch", "centimeter": "centimeter", "cm": "centimeter"}
    name = unit.get(getattr(resolution_unit, "value", resolution_unit))  # tifffile gives an IntEnum
    if pixels_per_unit is None or name is None:
        return None
    if name == "inch":
        if any(math.isclose(pixels_per_unit, dpi, rel_tol=1e-6) for dpi in DEFAULT_DPI):
            return None
        return 25_400.0 / pixels_per_unit
    return 10_000.0 / pixels_per_unit


def pixel_size_from_imagej(imagej: Mapping[str, Any] | None, x_resolution: Any) -> float | None:
    """Pixel size in µm from ImageJ metadata (``unit`` key) and XResolution (pixels per that unit).

    ImageJ writes e.g. ``unit=micron`` (or the escaped ``\\u00B5m``) in the ImageDescription and the
    number of pixels per unit as XResolution. Without a length unit (``pixel``, ``inch`` ...) -> None.
    """
    if not imagej or "unit" not in imagej:
        return None
    pixels_per_unit = _positive(_resolution_value(x_resolution))
    if pixels_per_unit is None:
        return None
    try:
        factor = unit_to_um(str(imagej["unit"]))
    except PixelSizeError:
        return None
    return factor / pixels_per_unit


def parse_ini_text(text: str) -> dict[str, dict[str, str]]:
    """Parse an INI-style block ("[Scan]\\nPixelWidth=1e-08") into {section: {key: value}}, keys as written.

    FEI/Thermo Fisher SEMs store their metadata this way; configparser does the parsing.
    """
    parser = configparser.ConfigParser(strict=False, interpolation=None, allow_no_value=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep "PixelWidth" as written
    try:
        parser.read_string(text)
    except configparser.Error:
        return {}
    return {section: dict(parser[section]) for section in parser.sections()}


def pixel_size_from_fei(fei: Mapping[str, Any] | str | None) -> float | None:
    """Pixel size in µm from Thermo Fisher/FEI metadata: ``[Scan] PixelWidth`` (or ``[EScan]``), in metres.

    ``fei`` is the raw text block or the {section: {key: value}} dict tifffile returns for tag 34682.
    Example: ``pixel_size_from_fei("[Scan]\\nPixelWidth=2.5e-09")`` -> 0.0025.
    """
    if isinstance(fei, str):
        fei = parse_ini_text(fei)
    if not fei:
        return None
    for section in ("Scan", "EScan"):
        values = fei.get(section)
        if isinstance(values, Mapping) and values.get("PixelWidth") not in (None, ""):
            try:
                return _positive(to_um(float(values["PixelWidth"]), "m"))
            except ValueError:
                return None
    return None


def pixel_size_from_zeiss(cz_sem: Mapping[str, Any] | str | None) -> float | None:
    """Pixel size in µm from Zeiss SmartSEM metadata (tag 34118, CZ_SEM): "Image Pixel Size = 2.5 nm".

    ``cz_sem`` is the raw text or the dict tifffile returns, whose values look like
    ``("Image Pixel Size", 2.5, "nm")``.
    """
    if isinstance(cz_sem, str):
        match = re.search(rf"Image Pixel Size\s*[=:]\s*({_NUMBER})\s*([^\s\d]+)", cz_sem)
        return _converted(match.group(1), match.group(2)) if match else None
    for entry in (cz_sem or {}).values():
        if isinstance(entry, tuple) and len(entry) == 3 and entry[0] == "Image Pixel Size":
            return _converted(entry[1], entry[2])
    return None


def _converted(value: Any, unit: str) -> float | None:
    try:
        return _positive(to_um(float(value), unit))
    except (PixelSizeError, ValueError):
        return None


def pixel_size_from_tescan(text: str | bytes | None) -> float | None:
    """Pixel size in µm from a TESCAN TIFF (tag 50431, text with ``PixelSizeX=1.2e-08`` in metres)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if not text:
        return None
    match = re.search(rf"PixelSizeX\s*=\s*({_NUMBER})", text)
    return _converted(match.group(1), "m") if match else None


def pixel_size_from_dm_axes(axes: Sequence[Mapping[str, Any]] | None) -> float | None:
    """Pixel size in µm from Digital Micrograph calibration as RosettaSciIO returns it.

    ``axes`` is the list of axis dicts (``{"name": "x", "scale": 2.0, "units": "nm", ...}``) of a 2-D
    signal; the first spatial axis with a length unit wins. Uncalibrated axes ("" or "px") -> None.
    """
    for axis in axes or ():
        units = str(axis.get("units") or "").strip()
        if units and units.lower() not in {"px", "pixel", "pixels", "<undefined>"}:
            value = _converted(axis.get("scale", 1.0), units)
            if value is not None:
                return value
    return None


# TIFF tag codes read by ``pixel_size_from_tiff_tags``.
TAG_X_RESOLUTION, TAG_RESOLUTION_UNIT = 282, 296
TAG_FEI_SFEG, TAG_FEI_HELIOS, TAG_CZ_SEM, TAG_TESCAN = 34680, 34682, 34118, 50431


def pixel_size_from_tiff_tags(
    tags: Mapping[int, Any], *, imagej: Mapping[str, Any] | None = None
) -> tuple[float | None, str | None]:
    """Pixel size in µm and its source name from a TIFF page's tags ({tag code: value}).

    Instrument metadata wins over generic tags, in this order: "fei", "zeiss", "tescan", "imagej",
    "tiff_resolution". Returns ``(None, None)`` when no convention gives a length.
    """
    fei = tags.get(TAG_FEI_HELIOS) or tags.get(TAG_FEI_SFEG)
    candidates = (
        ("fei", lambda: pixel_size_from_fei(fei)),
        ("zeiss", lambda: pixel_size_from_zeiss(tags.get(TAG_CZ_SEM))),
        ("tescan", lambda: pixel_size_from_tescan(_text(tags.get(TAG_TESCAN)))),
        ("imagej", lambda: pixel_size_from_imagej(imagej, tags.get(TAG_X_RESOLUTION))),
        (
            "tiff_resolution",
            lambda: pixel_size_from_resolution(tags.get(TAG_X_RESOLUTION), tags.get(TAG_RESOLUTION_UNIT)),
        ),
    )
    for source, find in candidates:
        value = find()
        if value is not None:
            return value, source
    return None, None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def instrument_summary(tags: Mapping[int, Any]) -> dict[str, Any]:
    """A few JSON-friendly facts about the instrument from TIFF tags: vendor, model, software, kV ..."""
    info: dict[str, Any] = {}
    for code, key in ((272, "model"), (305, "software")):
        if isinstance(tags.get(code), str) and tags[code].strip():
            info[key] = tags[code].strip()
    fei = tags.get(TAG_FEI_HELIOS) or tags.get(TAG_FEI_SFEG)
    if isinstance(fei, str):
        fei = parse_ini_text(fei)
    if isinstance(fei, Mapping) and fei:
        info["vendor"] = "Thermo Fisher / FEI"
        for section, key in (("System", "SystemType"), ("Beam", "HV"), ("Scan", "PixelWidth")):
            value = fei.get(section, {}).get(key) if isinstance(fei.get(section), Mapping) else None
            if isinstance(value, str | int | float):
                info[f"{section}.{key}"] = value
    elif isinstance(tags.get(TAG_CZ_SEM), Mapping | str):
        info["vendor"] = "Zeiss"
    elif tags.get(TAG_TESCAN) is not None:
        info["vendor"] = "TESCAN"
    return info
