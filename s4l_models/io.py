"""Atomic file writes: a temporary file in the same directory, fsync, then os.replace.

A crash while writing leaves the previous version of the file intact and readable, never a
half-written one (results tables, checkpoints, metrics and split files all go through here).

The file gets the permissions any new file would get (0666 less the process umask: 0644 under
the usual umask 022), not mkstemp's private 0600: sweeps on shared storage are read by others.
A full disk (ENOSPC, or a quota: EDQUOT) becomes a `DiskFullError`: one line naming the file,
the free space there and the least it needs; the previous version stays in place.
`free_path` names a new file or folder beside existing ones without replacing any.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import DiskFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it,
    which would briefly loosen it for other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} bytes"


# What to do after freeing space, for the training commands: the same file is written by
# s4l-train and by a sweep's trials, which continue differently.
RETRY = "rerun with --resume (a sweep: --resume DIR --retry-errored)"


def disk_full_error(target: Path, written: int, retry: str = RETRY) -> DiskFullError:
    """The one-line error for a write to `target` that ran out of space after `written` bytes;
    `retry` says how to carry on once space is freed."""
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        free = 0
    previous = target.stat().st_size if target.is_file() else 0
    need = max(written, previous, 1)
    return DiskFullError(
        f"disk full writing {target}: {_size(free)} free there, it needs at least {_size(need)} "
        f"more; the previous {target.name} is intact. Free space, then {retry}"
    )


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *,
                 retry: str = RETRY) -> Path:
    """Call `write(tmp_path)` to produce the file, then atomically move it to `path`; a full
    disk is a one-line DiskFullError saying to free space and then `retry`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        if err.errno in _FULL:
            raise disk_full_error(target, 0, retry) from None
        raise
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _is_disk_full(err):
            raise disk_full_error(target, written, retry) from None
        raise
    return target


def _is_disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT, also when a library wrapped it (pyarrow and torch re-raise OSErrors with
    the errno in the message or as the cause)."""
    seen = 0
    while err is not None and seen < 5:
        if isinstance(err, OSError) and err.errno in _FULL:
            return True
        text = str(err)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, retry: str = RETRY) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), retry=retry)


def atomic_write_text(path: str | os.PathLike, text: str, *, retry: str = RETRY) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), retry=retry)


def atomic_write_csv(path: str | os.PathLike, frame, *, retry: str = RETRY) -> Path:
    """A pandas DataFrame as CSV without its index, written atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False), retry=retry)


def free_path(path: Path) -> Path:
    """`path`, or `path` with -2, -3, ... before its suffix when it exists: nothing is
    overwritten (labels_round1-2.csv, simulate-2, results.parquet-2.unreadable)."""
    n, p = 2, path
    while p.exists():
        p = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return p
