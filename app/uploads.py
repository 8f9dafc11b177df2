"""Uploaded zip files (training data, batches of images) unpacked safely into a folder of the project.

Refused, before anything is written: members with absolute paths (``/x``, ``C:\\x``), backslashes or
``..`` parts, symbolic links, more than ``max_members`` files, and more than ``max_bytes`` of unpacked
data. The sizes a zip declares can lie, so each member is copied in blocks and counted as it is written.
Files go to a temporary folder next to the destination, which is renamed into place only when every
member was written: a refused or broken zip leaves nothing behind. Hidden files and macOS' ``__MACOSX``
folder are skipped.
"""

from __future__ import annotations

import io
import shutil
import stat
import tempfile
import weakref
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from microcnn.errors import DatasetError

MAX_UNPACKED_BYTES = 500 * 1024 * 1024
MAX_MEMBERS = 20_000
_BLOCK = 1 << 20


class ScratchFolder:
    """A temporary folder that lives as long as this object: removed by :meth:`remove`, when the object is
    collected (Streamlit drops a session's state some time after its browser tab closed) or at server exit.

    A session keeps its scratch folder in its own session state, so uploads and results of a closed
    session do not pile up in the system's temporary folder.
    """

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def remove(self) -> None:
        self._finalizer()


class UnsafeArchiveError(DatasetError):
    """A zip member would land outside the destination, is a link, or the zip is too large."""


def _check_member(info: zipfile.ZipInfo) -> bool:
    """True for a file to extract, False for one to skip; UnsafeArchiveError for a dangerous member."""
    name = info.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or "\\" in name:
        raise UnsafeArchiveError(f"The zip member {name!r} has an absolute path; zip relative paths only.")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UnsafeArchiveError(f"The zip member {name!r} points outside the folder ('..'); it is refused.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"The zip member {name!r} is a symbolic link; links are not accepted.")
    if info.is_dir():
        return False
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _copy_counted(src: io.BufferedIOBase, dst: Path, budget: int, name: str, limit: int) -> int:
    """Copy in blocks; raise once more than ``budget`` bytes came out. Returns the bytes written."""
    written = 0
    with open(dst, "wb") as out:
        while block := src.read(_BLOCK):
            written += len(block)
            if written > budget:
                raise UnsafeArchiveError(
                    f"The zip unpacks to more than the {limit:,} bytes allowed (at {name!r}); split it, or "
                    "put the data in a folder on the server and give its path."
                )
            out.write(block)
    return written


def unpack_zip(
    data: bytes,
    dest: Path,
    *,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Unpack zip ``data`` into the new folder ``dest``; returns the data root.

    The root is ``dest`` itself, or its single top-level folder when the zip holds one folder and no
    loose files (how "Compress folder" zips are made).

    Raises:
        DatasetError: not a zip file, or ``dest`` exists. UnsafeArchiveError: see the module docstring.

    Example:
        >>> root = unpack_zip(Path("steel.zip").read_bytes(), Path("runs/r1/data"))   # doctest: +SKIP
    """
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"'{dest.name}' already exists; unpack into a new folder.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError(
            "The upload is not a readable zip file; make one with 'Compress' / zip -r."
        ) from None
    with archive:
        members = [info for info in archive.infolist() if _check_member(info)]
        if len(members) > max_members:
            raise UnsafeArchiveError(
                f"The zip holds {len(members)} files; at most {max_members} are accepted."
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            budget = max_bytes
            for info in members:
                target = tmp.joinpath(*PurePosixPath(info.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src:
                    budget -= _copy_counted(src, target, budget, info.filename, max_bytes)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(f"The zip file is damaged ({exc}); zip the folder again.") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if not members:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError("The zip holds no files (hidden files and __MACOSX are skipped).")
    tmp.rename(dest)
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
