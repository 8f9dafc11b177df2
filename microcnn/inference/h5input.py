"""The input side of a batch job: lazy, validated reads from an HDF5 archive, and the input's identity.

:class:`InputArchive` opens one (N, H, W[, C]) dataset once per process and reads items in blocks; nothing
per item is held in memory (ids, pixel sizes and true image sizes are read with the block they belong to),
so memory does not grow with the archive. :func:`input_identity` is the cheap fingerprint (resolved path,
size, mtime) that ties a resumed job to the same input without re-hashing it; :func:`sha256_file` is the
full hash recorded once in the results' provenance.

Example:
    >>> archive = InputArchive("archive.h5")            # doctest: +SKIP
    >>> archive.read_many(0, 16)[0].pixels.shape        # doctest: +SKIP
    (256, 256)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError
from microcnn.io.micrograph import Micrograph

_SCALE = {"uint8": 255.0, "uint16": 65535.0}


def sha256_file(path: str | Path, *, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def input_identity(path: str | Path) -> dict[str, Any]:
    """{path (resolved), size_bytes, mtime_ns}: what a resumed job checks instead of re-hashing the input."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size_bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


class InputArchive:
    """Lazy, validated access to the images of one HDF5 dataset (N, H, W[, C]); opened once per process.

    For a microcnn archive (``/images``) the true image sizes (``/image_shapes``), pixel sizes and ids
    (``/names``) are used; any other dataset is read as whole (H, W[, C]) frames, uint8/uint16 scaled to
    [0, 1]. Ids are read per block (:meth:`item_ids`), never all at once.
    """

    def __init__(self, path: str | Path, dataset: str = "/images") -> None:
        import h5py

        self.path, self.dataset = Path(path), dataset.strip("/") or "images"
        if not self.path.is_file():
            raise DatasetError(f"Input archive '{self.path}' not found. Check the path.")
        if not h5py.is_hdf5(self.path):
            raise DatasetError(f"'{self.path}' is not an HDF5 file. Give a .h5 archive (microcnn pack).")
        try:
            self.file = h5py.File(self.path, "r")
            ds = self.file[self.dataset]
            self.shape, self.dtype = tuple(ds.shape), str(ds.dtype)
            self._has_names = self.dataset == "images" and "names" in self.file
            if self._has_names and self.file["names"].shape[0] != self.shape[0]:
                raise DatasetError(f"'{self.path}': /names has {self.file['names'].shape[0]} rows, "
                                   f"/images {self.shape[0]}. Re-create the archive.")  # fmt: skip
        except KeyError:
            keys = sorted(self.file.keys())
            raise DatasetError(
                f"'{self.path}' has no dataset '/{self.dataset}'. Choose one with --dataset; it has: {keys}."
            ) from None
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"'{self.path}' is damaged or truncated and cannot be read ({exc}). "
                               "Re-create or re-copy it.") from None  # fmt: skip
        if len(self.shape) not in (3, 4):
            raise DatasetError(f"/{self.dataset} must hold images (N, H, W[, C]); got shape {self.shape}.")

    def __len__(self) -> int:
        return int(self.shape[0])

    def item_ids(self, start: int, stop: int) -> list[str]:
        """Ids of items ``start..stop-1``: the archive's /names, else the zero-padded index."""
        if self._has_names:
            return [str(s) for s in self.file["names"].asstr()[start:stop]]
        return [f"{i:06d}" for i in range(start, stop)]

    def item_id(self, index: int) -> str:
        return self.item_ids(index, index + 1)[0]

    def read(self, index: int) -> Micrograph:
        """Item ``index`` as a Micrograph; raises on a corrupt chunk (fletcher32) or non-finite values."""
        return self._micrographs(index, index + 1)[0]

    def read_many(self, start: int, stop: int) -> list[Micrograph | Exception]:
        """Items ``start..stop-1``: one HDF5 read per dataset when all are sound; otherwise item by item,
        with the exception of each item that cannot be read in its place."""
        try:
            return list(self._micrographs(start, stop))
        except Exception:  # a damaged chunk or bad values somewhere in the block: find which items
            out: list[Micrograph | Exception] = []
            for i in range(start, stop):
                try:
                    out.append(self.read(i))
                except Exception as exc:
                    out.append(exc)
            return out

    def _micrographs(self, start: int, stop: int) -> list[Micrograph]:
        f, n = self.file, stop - start
        shapes = np.tile(np.array(self.shape[1:3]), (n, 1))
        sizes = np.full(n, np.nan)
        if self.dataset == "images":
            if "image_shapes" in f:
                shapes = f["image_shapes"][start:stop]
            if "pixel_size_um" in f:
                sizes = f["pixel_size_um"][start:stop].astype(float)
        rows, cols = int(shapes[:, 0].max()), int(shapes[:, 1].max())
        block = f[self.dataset][start:stop, :rows, :cols]
        scale = _SCALE.get(str(block.dtype))
        out = []
        for raw, (r, c), size in zip(block, shapes, sizes):
            pixels = raw[:r, :c].astype(np.float32)
            if scale:
                pixels /= scale
            if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
                raise ValueError("pixel values must be finite and in [0, 1] (float) or uint8/uint16")
            out.append(Micrograph(pixels=pixels, pixel_size_um=float(size) if np.isfinite(size) and size > 0
                                  else None))  # fmt: skip
        return out

    def close(self) -> None:
        self.file.close()
