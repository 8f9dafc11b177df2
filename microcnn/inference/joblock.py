"""One writer per output: an exclusive ``flock`` on ``<output>.lock``, held for the whole job.

HDF5's own file locking is not enough: it is switched off by ``HDF5_USE_FILE_LOCKING=FALSE`` (common on
clusters), fails with ENOLCK/EACCES on some NFS mounts, and a reader's shared lock makes a writer's open
fail like a second writer would. So the job takes its own lock first, before hashing anything or loading a
model, and everything it then does to ``<output>.partial`` happens while it holds that lock.

- A lock held by another process -> :class:`BatchJobError` at once ("Another job is writing ..."), naming
  the other job's pid and host (written into the lock file).
- A file system without locks -> :class:`BatchJobError` (never silently unlocked).
- The kernel drops the lock when its process dies (even by SIGKILL), so a stale lock file left behind is
  harmless: the next job locks it. The holder deletes the file on release; a job that locked a file which
  was deleted meanwhile notices (inode check) and locks the new one.

Example:
    >>> with JobLock(Path("results.h5.lock")):   # doctest: +SKIP
    ...     ...                                  # write results.h5.partial
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from types import TracebackType

from microcnn.inference.h5out import BatchJobError

_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)  # POSIX lets flock/lockf report a held lock as either


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def _try_lock(fd: int) -> None:
    """Exclusive, non-blocking lock of the whole file; raises OSError (errno in _BUSY when held)."""
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt byte-range lock on the first byte
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class JobLock:
    """Exclusive lock on ``path`` for the lifetime of a job (a context manager; see the module docstring).

    Args:
        path: the lock file (``<output>.lock``); created if missing, deleted on release.
        what: the output it protects, for messages.
    """

    def __init__(self, path: Path, *, what: Path | None = None) -> None:
        self.path, self.what, self.fd = Path(path), what or Path(path), -1

    def acquire(self) -> JobLock:
        for _ in range(5):  # another job may delete and re-create the file between our open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _try_lock(fd)
            except OSError as exc:
                holder = self._holder()
                os.close(fd)
                raise self._error(exc, holder) from None
            if self._same_file(fd):
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                return self
            os.close(fd)
        raise BatchJobError(f"Could not lock '{self.path}': it keeps being replaced by another process. "
                            "Make sure only one job writes this output.")  # fmt: skip

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def _error(self, exc: OSError, holder: str) -> BatchJobError:
        if exc.errno in _BUSY:
            who = f" ({holder})" if holder else ""
            return BatchJobError(
                f"Another job{who} is writing '{self.what}' (it holds '{self.path}'). Wait for it to finish "
                "or stop it; two jobs must not write one output."
            )
        return BatchJobError(
            f"Cannot lock '{self.path}' ({exc.strerror or exc}, errno {exc.errno}): this file system does "
            "not support file locks (some NFS mounts). Write the output to a local disk or a file system "
            "with locking; without a lock two jobs could write one output."
        )

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            if self._same_file(self.fd):
                self.path.unlink()  # while still locked: a waiting job notices the inode change and retries
        except OSError:  # e.g. Windows, where an open file cannot be deleted: a stale lock file is harmless
            pass
        finally:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
