"""Folder locks: one process at a time trains, resumes or exports a run, or chiefs a sweep.

The lock is an OS file lock (`flock` on POSIX, `msvcrt.locking` on Windows) on `.lock` in the
folder, so it goes away with the process that holds it, however that process ends; there is
no stale marker to clean up. The file keeps the holder's process id for the error message.

A process may take the same folder's lock again while it holds it (a run's training exports
under the lock it already has); the folder is released when the outermost `hold` ends.

This module must not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"
PROBE_RETRIES, PROBE_WAIT_S = 10, 0.02  # `hold` outlasts a `holder` probe (microseconds)

_held: dict[Path, int] = {}  # folder → how many nested `hold`s this process has on it


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def hold(folder: str | Path, what: str = "folder", wait_s: float = 0.0) -> Iterator[None]:
    """Holds `folder`'s lock for the `with` block; waits up to `wait_s` seconds for another
    process to release it (0: only the instant a `holder` probe takes).

    Raises:
        FolderInUse: when another process holds it; the message names that process's id.
    """
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        yield  # a folder this process cannot write (exporting a read-only run elsewhere)
        return
    try:
        # `holder` takes the lock for an instant to see whether it is free: a refusal is only
        # another holder's if it lasts.
        deadline = time.monotonic() + wait_s
        attempts = 0
        while not (locked := _try_lock(fd)):
            attempts += 1
            if attempts > PROBE_RETRIES and time.monotonic() >= deadline:
                break
            time.sleep(PROBE_WAIT_S if attempts <= PROBE_RETRIES else 0.1)
        if not locked:
            raise FolderInUse(
                f"{folder} is in use by process {_holder(path)} (another {what} is training, "
                "resuming or exporting into it). Wait for it to end or stop it, then run this "
                "again."
            )
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _held[folder] = 1
        try:
            yield
        finally:
            del _held[folder]
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def holder(folder: str | Path) -> str | None:
    """The process id holding `folder`'s lock, or None when no live process holds it."""
    folder = Path(folder).resolve()
    if folder in _held:
        return str(os.getpid())
    path = folder / LOCK_FILE
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)  # a lock needs no write access (read-only run folders)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            return None  # closing the descriptor below releases it again
        return _holder(path)
    finally:
        os.close(fd)
