"""The live index snapshot of the service and its hot swap.

:class:`SnapshotHolder` keeps the live :class:`LiveIndex`. Once started, a
background thread reads ``index/CURRENT`` every ``poll_interval`` seconds;
when it names another snapshot, the thread opens and verifies it (the same
checks as the CLI, plus the model check), prepares its BM25 index and filter
columns, and swaps the reference under a lock. Every request takes one
reference for its whole life, so it never mixes versions; a retired snapshot
is closed when its last in-flight request ends. A snapshot that fails to load
is logged at ERROR, counted and shown in ``/stats``, and retried after a
back-off (never, for a model mismatch, until ``CURRENT`` changes again); the
previous snapshot keeps serving. Each swap is logged at INFO (old → new,
version, load time).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lakevec.clock import SYSTEM_CLOCK, Clock, iso_ms
from lakevec.embed.base import Embedder
from lakevec.errors import ModelMismatchError
from lakevec.index.layout import CURRENT_FILE, current_snapshot_dir
from lakevec.index.manifest import read_manifest
from lakevec.index.snapshot import IndexSnapshot, check_model, open_index
from lakevec.retrieval.base import Retriever
from lakevec.retrieval.dense import DEFAULT_FILTER_POLICY, FilterPolicy
from lakevec.retrieval.registry import retriever_for
from lakevec.service.settings import MIN_POLL_INTERVAL, RELOAD_BACKOFF
from lakevec.settings import DEFAULT_POLL_INTERVAL, DEFAULT_RETRIEVER

log = logging.getLogger("lakevec.service")

# How long shutdown waits for a snapshot load in progress.
STOP_TIMEOUT = 60.0


@dataclass(eq=False)
class LiveIndex:
    """One loaded snapshot plus what requests need from it; refcounted by the holder."""

    snapshot: IndexSnapshot
    embedder: Embedder
    loaded_at: str
    policy: FilterPolicy = DEFAULT_FILTER_POLICY
    refs: int = 0
    retired: bool = False
    closed: bool = False

    @property
    def name(self) -> str:
        return self.snapshot.name

    @property
    def version(self) -> int:
        return self.snapshot.manifest.version

    def retriever(self, kind: str = DEFAULT_RETRIEVER) -> Retriever:
        """A retriever over this snapshot (cheap: BM25 and filter columns are cached on it).

        It never closes the shared snapshot itself.
        """
        return retriever_for(kind, self.snapshot, self.embedder, policy=self.policy)

    def close(self) -> None:
        self.snapshot.close()


def load_live(
    index_dir: Path,
    embedder: Embedder,
    *,
    checksums: bool = True,
    clock: Clock = SYSTEM_CLOCK,
    policy: FilterPolicy = DEFAULT_FILTER_POLICY,
) -> LiveIndex:
    """Open and verify the live snapshot, and prepare its BM25 index and filter columns.

    The model is checked against the manifest first, so a snapshot built with
    another model is refused before its files are hashed and its graph loaded.
    BM25 and the filter columns are prepared here, on the loader thread, so
    that no request pays for them.
    """
    check_model(read_manifest(current_snapshot_dir(index_dir)), embedder)
    snapshot = open_index(index_dir, checksums=checksums)
    try:
        check_model(snapshot.manifest, embedder)  # CURRENT may have moved meanwhile
        snapshot.columns()
        snapshot.bm25()
        return LiveIndex(snapshot, embedder, iso_ms(clock.now()), policy)
    except BaseException:
        snapshot.close()
        raise


class SnapshotHolder:
    """Owns the live :class:`LiveIndex`; swaps in new snapshots without failing requests.

    The first snapshot is loaded by the constructor (errors propagate).
    :meth:`start` runs the background check; :meth:`close` stops and joins it.
    ``swaps`` and ``failures`` count outcomes; :meth:`wait_until` blocks until
    a condition on the holder holds (it is re-checked after every outcome).
    """

    def __init__(
        self,
        index_dir: Path,
        embedder: Embedder,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        checksums: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        policy: FilterPolicy = DEFAULT_FILTER_POLICY,
    ) -> None:
        self.index_dir = index_dir
        self.embedder = embedder
        self.poll_interval = poll_interval
        self.checksums = checksums
        self.clock = clock
        self.policy = policy
        self.swaps = 0
        self.failures = 0
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._load_lock = threading.Lock()  # one load at a time (watcher or refresh)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._failed: dict[str, float] = {}  # pointer → monotonic time it may be retried
        self._closed = False
        self._live = self._load()

    def _load(self) -> LiveIndex:
        return load_live(self.index_dir, self.embedder, checksums=self.checksums,
                         clock=self.clock, policy=self.policy)

    @property
    def live(self) -> LiveIndex:
        return self._live

    def in_flight(self) -> int:
        with self._lock:
            return self._live.refs

    @contextmanager
    def use(self) -> Iterator[LiveIndex]:
        """The snapshot for one request: held (not closed) until the block exits."""
        with self._lock:
            live = self._live
            live.refs += 1
        try:
            yield live
        finally:
            self._release(live)

    def _release(self, live: LiveIndex) -> None:
        with self._lock:
            live.refs -= 1
            close = live.retired and live.refs == 0 and not live.closed
            if close:
                live.closed = True
        if close:
            live.close()

    # ─── background check ───────────────────────────────────────────────────

    def start(self) -> None:
        """Start the background check of ``CURRENT`` (idempotent)."""
        with self._lock:
            if self._watcher is not None or self._closed:
                return
            self._watcher = threading.Thread(
                target=self._watch, name="lakevec-index-watch", daemon=True
            )
        self._watcher.start()

    def _watch(self) -> None:
        interval = max(self.poll_interval, MIN_POLL_INTERVAL)
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:
                # The thread must outlive any surprise; the next tick tries again.
                log.exception("index check failed")

    def _pointer(self) -> str | None:
        try:
            return (self.index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def check(self, *, force: bool = False) -> bool:
        """Load and swap in the snapshot ``CURRENT`` names if it is new; True on a swap.

        A snapshot that failed to load is retried only after a back-off
        unless ``force`` is given.
        """
        with self._load_lock:
            pointer = self._pointer()
            with self._lock:
                if self._closed or not pointer or pointer == self._live.name:
                    return False
            started = self.clock.monotonic()
            if not force and started < self._failed.get(pointer, -math.inf):
                return False
            try:
                new = self._load()
            except Exception as exc:  # noqa: BLE001 — logged; the old snapshot keeps serving
                self._failed_load(pointer, exc)
                return False
            load_ms = (self.clock.monotonic() - started) * 1000
            return self._swap(new, load_ms)

    def _failed_load(self, pointer: str, exc: Exception) -> None:
        log.error("cannot load index snapshot %s (still serving %s): %s",
                  pointer, self._live.name, exc)
        # A model mismatch cannot heal by itself: wait for CURRENT to change
        # instead of reloading the snapshot every few seconds.
        retry = math.inf if isinstance(exc, ModelMismatchError) else RELOAD_BACKOFF
        with self._changed:
            self.failures += 1
            self.last_error = f"{pointer}: {exc}"
            self._failed[pointer] = self.clock.monotonic() + retry
            self._changed.notify_all()

    def _swap(self, new: LiveIndex, load_ms: float) -> bool:
        with self._changed:
            old = self._live
            swapped = not self._closed and new.name != old.name
            close_old = False
            if swapped:
                self._live = new
                self.swaps += 1
                self.last_error = None
                self._failed.clear()
                old.retired = True
                close_old = old.refs == 0 and not old.closed
                if close_old:
                    old.closed = True
            self._changed.notify_all()
        if not swapped:
            new.close()
            return False
        if close_old:
            old.close()
        log.info("index snapshot %s → %s (version %d) loaded in %.1f ms",
                 old.name, new.name, new.version, load_ms)
        return True

    def refresh(self) -> int:
        """Check ``CURRENT`` now (ignoring any back-off) and return the live version."""
        self.check(force=True)
        return self._live.version

    def wait_until(self, condition: Callable[[SnapshotHolder], bool], timeout: float) -> bool:
        """Block until ``condition(self)`` holds (re-checked after each swap or failure).

        Returns whether it held before ``timeout`` seconds passed.
        """
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout)

    def close(self) -> None:
        """Stop the background check (joined) and close the live snapshot once idle."""
        with self._lock:
            self._closed = True
            watcher = self._watcher
        self._stop.set()
        if watcher is not None:
            watcher.join(STOP_TIMEOUT)
            if watcher.is_alive():
                log.warning("the index check thread did not stop within %.0f s", STOP_TIMEOUT)
        with self._lock:
            live = self._live
            live.retired = True
            close = live.refs == 0 and not live.closed
            if close:
                live.closed = True
        if close:
            live.close()
