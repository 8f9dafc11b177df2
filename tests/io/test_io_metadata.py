"""Pixel size from metadata: each parser on hand-made tag values, and end to end on TIFFs built here."""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.io.images import read_micrograph
from microcnn.io.metadata import (
    PixelSizeError,
    parse_ini_text,
    pixel_size_from_dm_axes,
    pixel_size_from_fei,
    pixel_size_from_imagej,
    pixel_size_from_resolution,
    pixel_size_from_tescan,
    pixel_size_from_zeiss,
    to_um,
)

from .fixtures import encode_tiff

U16 = np.array([[0, 255], [256, 65535]], np.uint16)


@pytest.mark.parametrize(
    ("value", "unit", "um"),
    [
        (1.0, "m", 1e6),
        (2.0, "mm", 2000.0),
        (3.0, "µm", 3.0),
        (3.0, "μm", 3.0),  # Greek mu, as some software writes it
        (3.0, "um", 3.0),
        (3.0, "micron", 3.0),
        (2.5, "nm", 0.0025),
        (500.0, "pm", 0.0005),
        (10.0, "Å", 0.001),
        (10.0, "angstrom", 0.001),
        (1.0, "\\u00B5m", 1.0),  # ImageJ's escaped micro sign
    ],
)
def test_unit_table(value, unit, um):
    assert to_um(value, unit) == pytest.approx(um, rel=1e-12)


def test_unknown_unit_is_an_error_listing_known_ones():
    with pytest.raises(PixelSizeError, match=r"Unknown length unit 'furlong'.*nm"):
        to_um(1.0, "furlong")


@pytest.mark.parametrize(
    ("resolution", "unit", "um"),
    [
        ((10_000, 1), 3, 1.0),  # 10,000 px per cm -> 1 µm
        ((25_400, 1), 2, 1.0),  # 25,400 px per inch -> 1 µm
        (50_000.0, "centimeter", 0.2),
        ((72, 1), 2, None),  # a software default dpi, not a specimen scale
        ((300, 1), 2, None),
        ((10_000, 1), 1, None),  # ResolutionUnit "none": no length
        (None, 3, None),
    ],
)
def test_tiff_resolution(resolution, unit, um):
    assert pixel_size_from_resolution(resolution, unit) == (pytest.approx(um) if um else None)


def test_imagej_unit_and_resolution():
    assert pixel_size_from_imagej({"unit": "micron"}, (4, 1)) == pytest.approx(0.25)
    assert pixel_size_from_imagej({"unit": "nm"}, (1, 2)) == pytest.approx(0.002)  # 0.5 px per nm
    assert pixel_size_from_imagej({"unit": "pixel"}, (1, 1)) is None
    assert pixel_size_from_imagej(None, (4, 1)) is None


def test_fei_text_and_dict():
    text = "[System]\nSystemType=Quanta\n[Scan]\nPixelWidth=2.5e-09\nPixelHeight=2.5e-09\n"
    assert pixel_size_from_fei(text) == pytest.approx(0.0025)
    assert pixel_size_from_fei({"Scan": {"PixelWidth": 1.0e-6}}) == pytest.approx(1.0)
    assert pixel_size_from_fei("[EScan]\nPixelWidth=4e-08") == pytest.approx(0.04)
    assert pixel_size_from_fei("[Beam]\nHV=5000") is None
    assert parse_ini_text(text)["Scan"]["PixelWidth"] == "2.5e-09"


def test_zeiss_text_and_dict():
    assert pixel_size_from_zeiss("AP_IMAGE_PIXEL_SIZE\nImage Pixel Size = 2.5 nm\n") == pytest.approx(0.0025)
    parsed = {"ap_image_pixel_size": ("Image Pixel Size", 1.2, "µm"), "ap_mag": ("Mag", "50 K X")}
    assert pixel_size_from_zeiss(parsed) == pytest.approx(1.2)
    assert pixel_size_from_zeiss({"ap_mag": ("Mag", "50 K X")}) is None


def test_tescan_text_and_bytes():
    assert pixel_size_from_tescan("[MAIN]\r\nPixelSizeX=3.1e-09\r\n") == pytest.approx(0.0031)
    assert pixel_size_from_tescan(b"junk\x00PixelSizeX=1e-06\r\n") == pytest.approx(1.0)
    assert pixel_size_from_tescan("Magnification=1000") is None


def test_dm_calibration_axes():
    axes = [
        {"name": "y", "scale": 2.0, "units": "nm", "size": 512},
        {"name": "x", "scale": 2.0, "units": "nm", "size": 512},
    ]
    assert pixel_size_from_dm_axes(axes) == pytest.approx(0.002)
    assert pixel_size_from_dm_axes([{"scale": 0.5, "units": "µm"}]) == pytest.approx(0.5)
    assert pixel_size_from_dm_axes([{"scale": 1.0, "units": ""}, {"scale": 1.0, "units": "px"}]) is None


FEI_TAG = (34682, "s", 0, "[System]\nSystemType=Helios\n[Beam]\nHV=5000\n[Scan]\nPixelWidth=2.5e-09\n", True)
ZEISS_TAG = (34118, "s", 0, "\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 2.5 nm\r\n", True)
TESCAN_TAG = (50431, "s", 0, "[MAIN]\r\nPixelSizeX=3.1e-09\r\n", True)


@pytest.mark.parametrize(
    ("kwargs", "um", "source"),
    [
        ({"imagej": True, "resolution": (20.0, 20.0), "metadata": {"unit": "um"}}, 0.05, "imagej"),
        ({"extratags": [FEI_TAG]}, 0.0025, "fei"),
        ({"extratags": [ZEISS_TAG]}, 0.0025, "zeiss"),
        ({"extratags": [TESCAN_TAG]}, 0.0031, "tescan"),
        ({"resolution": (10_000.0, 10_000.0), "resolutionunit": "CENTIMETER"}, 1.0, "tiff_resolution"),
        ({"resolution": (72.0, 72.0), "resolutionunit": "INCH"}, None, None),
        ({}, None, None),
    ],
    ids=["imagej", "fei", "zeiss", "tescan", "resolution_cm", "default_72dpi", "none"],
)
def test_16bit_tiff_pixel_size_end_to_end(kwargs, um, source):
    m = read_micrograph(encode_tiff(U16, **kwargs))
    assert m.pixel_size_um == (pytest.approx(um) if um else None)
    assert m.meta["pixel_size_source"] == source
    assert m.unit == ("µm" if um else "px")
    np.testing.assert_allclose(m.pixels, U16 / 65535.0, rtol=1e-6)  # the 16-bit range is kept too


def test_fei_instrument_facts_are_recorded():
    m = read_micrograph(encode_tiff(U16, extratags=[FEI_TAG]))
    assert m.meta["instrument"]["vendor"] == "Thermo Fisher / FEI"
    assert m.meta["instrument"]["Beam.HV"] == 5000


def test_explicit_pixel_size_overrides_metadata():
    m = read_micrograph(encode_tiff(U16, extratags=[FEI_TAG]), pixel_size_um=0.1)
    assert m.pixel_size_um == 0.1 and m.meta["pixel_size_source"] == "user"
    assert m.meta["pixel_size_file_um"] == pytest.approx(0.0025)
