"""Atomic writes: a reader never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` via a temporary file and a rename."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Writes `data` as indented, strict JSON to `path` via a temporary file and a rename.

    A non-finite float (NaN, Infinity), which strict parsers reject, is written as null; a
    mapping that held one gets a `<key>_note` beside it saying what it was.
    """
    text = json.dumps(strict_json(data), indent=2, default=str, allow_nan=False)
    write_text(path, text + "\n")


def strict_json(data: Any) -> Any:
    """`data` with every non-finite float replaced by None (noted beside it in a mapping)."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            result[key] = strict_json(value)
            if isinstance(value, float) and not math.isfinite(value):
                result[f"{key}_note"] = f"{value} (not a finite number) written as null"
        return result
    if isinstance(data, list | tuple):
        return [strict_json(v) for v in data]
    if hasattr(data, "dtype") and hasattr(data, "item") and getattr(data, "ndim", 1) == 0:
        return strict_json(data.item())  # a NumPy scalar
    return data


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yields a sibling path to write (`.partial.NAME`: a Keras file keeps the suffix Keras
    asks for) that replaces `path` when the block succeeds. On any exception it is removed and
    `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial.{path.name}")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


@contextlib.contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling folder that becomes `target` when the block succeeds.

    On any exception the temporary folder is removed and `target` is left as it was.

    Raises:
        FileExistsError: when `target` exists and `overwrite` is False.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists. Choose another output path or pass --force to replace it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        yield tmp
        if overwrite and target.exists():
            # Move the old folder aside first so the swap itself is one rename.
            old = tmp.with_name(tmp.name + ".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            try:  # a folder is never renamed onto an existing one: two writers, one wins
                os.rename(tmp, target)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                    raise
                raise FileExistsError(
                    f"{target} was written by another process while this one was writing it; "
                    "it is kept as that process left it and nothing of this one's is. Choose "
                    "another output path, or pass --force to replace it."
                ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LEFTOVER_PATTERNS = (".partial.*", ".*.tmp", ".*.tmp.old")  # what `replacing`/`atomic_directory`
# leave behind when their process is killed


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Removes the partial files and temporary folders that a killed process left in `folder`
    (at any depth). Call it only while holding the folder's lock (`ktemplate.locks`): then no
    live process is writing them. Returns what was removed."""
    folder = Path(folder)
    removed = []
    for pattern in LEFTOVER_PATTERNS:
        for path in sorted(folder.rglob(pattern)):
            if not path.exists():  # inside a folder removed already
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def clear_folder(folder: str | Path, keep: str | None = None) -> None:
    """Removes everything in `folder` except the entry named `keep` (e.g. the folder's lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# Full, over quota, a file over a size limit (ulimit -f, a filesystem's largest file),
# read-only, or not ours to write.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(error: BaseException) -> OSError | None:
    """`error` (or what it was raised from) when it is a disk fault (`DISK_ERRORS`); else
    None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return error
        error = error.__cause__ or error.__context__
    return None


def check_writable(folder: str | Path, needed_bytes: int, what: str) -> None:
    """Raises OSError (a one-line message) when `folder` (or the nearest folder above it that
    exists, where it will be created) cannot be written or has less than `needed_bytes` free."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OSError(
            e.errno,
            f"{existing} cannot be written ({os.strerror(e.errno or 0)}), so {what} cannot go "
            f"into {folder}: choose a writable --output-dir",
        ) from None
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise OSError(
            errno.ENOSPC,
            f"{existing} has {_mib(free)} free, and {what} needs about {_mib(needed_bytes)} "
            "(checkpoints, backups and the export): free some space or choose another "
            "--output-dir",
        )


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"
