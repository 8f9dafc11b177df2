"""Benchmark: how fast and how cheaply read_micrograph refuses hostile files, and how fast it reads.

Promises measured (RELIABILITY.md "Images"):
    - a 68-byte PNG that claims 20000 x 20000 px is refused in < 100 ms with a few MB of memory;
    - a 20,000-page TIFF is refused in well under a second.

Run: ``python benchmarks/bench_io.py`` (prints a dict and returns it from ``main()``).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from microcnn.errors import MicrographError
from microcnn.io.images import read_micrograph


def _png_header_only(width: int, height: int) -> bytes:
    """Signature, IHDR, a stub IDAT, IEND: a tiny PNG claiming ``width`` x ``height`` 8-bit gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    stub = chunk(b"IDAT", zlib.compress(b"\x00", 9))  # a token data chunk: the file is 66 bytes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + stub + chunk(b"IEND", b"")


def _many_page_tiff(n_pages: int) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for _ in range(n_pages):
            writer.write(np.zeros((1, 1), np.uint8), contiguous=False, metadata=None)
    return buffer.getvalue()


def _time_refusal(data: bytes, *, repeats: int) -> dict[str, Any]:
    """Median / max seconds and peak traced memory (MB) of read_micrograph refusing ``data``."""
    times, error = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            read_micrograph(data)
        except MicrographError as exc:
            error = type(exc).__name__
        times.append(time.perf_counter() - start)
    rss_before = _reset_peak_rss_kib()
    tracemalloc.start()
    with contextlib.suppress(MicrographError):
        read_micrograph(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "bytes": len(data),
        "error": error,
        "median_ms": 1e3 * statistics.median(times),
        "max_ms": 1e3 * max(times),
        "peak_python_mb": peak / 2**20,
        "peak_rss_growth_mb": (_status_kib("VmHWM") - rss_before) / 1024,
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith(field)))


def _reset_peak_rss_kib() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS and return that (KiB).

    ru_maxrss never decreases, so after earlier, larger work it would hide the growth of the call being
    measured; Linux resets VmHWM when "5" is written to /proc/self/clear_refs.
    """
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kib("VmRSS")


def _time_call(call: Callable[[], Any], *, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(repeats: int = 20) -> dict[str, Any]:
    import tifffile

    results: dict[str, Any] = {}
    bomb = _png_header_only(20_000, 20_000)
    results["png_bomb_20000x20000"] = _time_refusal(bomb, repeats=repeats)
    results["png_bomb_20000x20000"]["under_100_ms"] = results["png_bomb_20000x20000"]["max_ms"] < 100
    results["png_header_120mpx"] = _time_refusal(_png_header_only(12_000, 10_000), repeats=repeats)
    pages = _many_page_tiff(20_000)
    results["tiff_20000_pages"] = _time_refusal(pages, repeats=max(3, repeats // 4))
    results["tiff_20000_pages"]["under_1_s"] = results["tiff_20000_pages"]["max_ms"] < 1000
    image = np.random.default_rng(0).integers(0, 65535, (2048, 2048), dtype=np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    data = buffer.getvalue()
    results["read_tiff16_2048x2048_ms"] = _time_call(lambda: read_micrograph(data), repeats=5)
    print(results)
    return results


if __name__ == "__main__":
    main()
