"""Advisory file locks (``fcntl.flock``) with a timeout and a holder pid.

flock locks die with their process, so a SIGKILLed holder never leaves a
stale lock behind; the pid written into the lock file is only for messages.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lakevec.errors import IndexCorruptError, IndexLockedError, LakevecError


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


def acquire(fd: int, *, timeout: float, on_timeout: Callable[[], Exception]) -> None:
    """Take an exclusive flock on ``fd``, polling for at most ``timeout`` seconds."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise on_timeout() from None
            time.sleep(0.01)


@contextmanager
def exclusive_lock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait at most ``timeout`` seconds.

    Raises :class:`IndexLockedError` naming the holder's pid when it times out,
    and :class:`IndexCorruptError` when the lock file cannot be opened (a
    directory in its place, permissions...).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise IndexCorruptError(
            f"cannot open lock file {path} ({exc.strerror or exc}) — remove it"
            + ("" if isinstance(exc, IsADirectoryError) else " or fix its permissions")
        ) from None
    try:
        acquire(
            fd,
            timeout=timeout,
            on_timeout=lambda: IndexLockedError(
                f"another {what} is running, pid {_holder(path)} (lock {path}) — "
                "wait for it to finish or raise --lock-timeout"
            ),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def locked_log(
    path: Path, *, timeout: float, what: str, fix: str, error: type[LakevecError]
) -> Iterator[int]:
    """An append-only JSONL file opened and exclusively locked: yields its descriptor.

    The discipline every shared log follows (the evidence log, the corpus a
    promotion appends to): flock the file itself, write whole lines with
    :func:`append_line`, fsync, and let closing the descriptor release the
    lock. OS failures raise ``error`` naming ``what`` and the ``fix``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise error(f"cannot open {what} {path}: {exc.strerror or exc} — {fix}") from exc
    try:
        acquire(fd, timeout=timeout, on_timeout=lambda: error(
            f"{what} {path} stayed locked by another writer for {timeout:g}s"))
        yield fd
    except OSError as exc:
        raise error(f"cannot write {what} {path}: {exc.strerror or exc} — {fix}") from exc
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def read_all(fd: int) -> bytes:
    """The whole content of a locked log (read with pread: the offset stays at the end)."""
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def append_line(fd: int, data: bytes) -> None:
    """Append one whole line (``data`` ends with a newline) to a locked log, then fsync.

    A writer killed mid-line must not glue its fragment to this line, so a
    missing final newline is written first.
    """
    size = os.fstat(fd).st_size
    if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    view = memoryview(data)
    while view:  # one write in practice; the loop only guards short writes
        view = view[os.write(fd, view) :]
    os.fsync(fd)
