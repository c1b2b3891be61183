"""Writing files so that a failure never leaves a torn file or a raw traceback.

    write_atomically(path, lambda handle: handle.write(text.encode()))
    write_atomically(path, lambda handle: torch.save(state, handle))
    ensure_writable_file(Path("results/grid.jsonl"))   # before hours of work, not after

A file is written to a temporary name in its own folder, flushed to disk and renamed over
the old one, so a reader (or a crash) sees the old file or the new one, never half of one.
Every file-system failure (no permission, a full disk, a file where a folder should be)
becomes a StorageError whose message names the path and says what to do; the temporary
file is removed.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, IO


class StorageError(OSError):
    """A file could not be written or read; the message names it and says what to do."""

    def __init__(self, code: int, message: str):
        super().__init__(message)  # one argument: str() is the message alone
        self.errno = code


def explain(error: BaseException, path: Path, doing: str) -> StorageError:
    """One clear sentence for a failed file operation on `path`."""
    path = Path(path)
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC or "unexpected pos" in str(error) or "No space left" in str(error):
        free = _free_bytes(path)
        hint = (f"the disk is full ({free / 1e6:.1f} MB free on its file system); free some space "
                "and run the same command again")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "permission denied; choose a location you can write to, or change its permissions"
    elif code == errno.EISDIR:
        hint = "a folder is in the way; remove it or choose another file name"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file is in the way where a folder is needed; remove it or choose another location"
    else:
        hint = str(error)
    return StorageError(code or errno.EIO, f"cannot {doing} {path}: {hint}")


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


def ensure_folder(folder: Path) -> Path:
    """Create `folder` (and its parents) or raise a StorageError that says why not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, FileExistsError) as error:
        raise explain(error, folder, "create the folder") from error
    if not folder.is_dir():
        raise explain(FileExistsError(errno.EEXIST, "exists"), folder, "create the folder")
    return folder


def ensure_writable_file(path: Path) -> Path:
    """Check, before any work, that `path` can be created or appended to (it is not changed)."""
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        raise explain(IsADirectoryError(errno.EISDIR, "is a directory"), path, "write")
    try:
        if path.exists():
            with open(path, "ab"):
                pass
        else:
            probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
            probe.close()
    except OSError as error:
        raise explain(error, path, "write") from error
    return path


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write `path` through `write(handle)` (a binary file handle) all at once, or not at all."""
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        raise explain(IsADirectoryError(errno.EISDIR, "is a directory"), path, "write")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(error, OSError) or (isinstance(error, RuntimeError) and "unexpected pos" in str(error)):
            raise explain(error, path, "write") from error
        raise
    return path
