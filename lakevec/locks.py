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

from lakevec.errors import IndexCorruptError, IndexLockedError


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
