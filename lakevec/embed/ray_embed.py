"""Embedding on a Ray cluster: an :class:`~lakevec.embed.base.Embedder` whose ``encode``
runs Ray Data batch inference over an actor pool (``lakevec build-index --ray``).

The index build does not change: it plans what to embed (new and changed
records only), calls ``encode`` and builds the HNSW graph and publishes the
snapshot on the driver, as for a local build. Only ``encode`` is distributed:

1. The texts are sorted longest-first, exactly as a local build sorts them
   (:func:`~lakevec.embed.base.encode_in_chunks`), and cut into Ray Data
   blocks of whole batches (:func:`plan_blocks`). Each batch therefore holds
   texts of similar length (little padding), and the same texts a local build
   would batch together, so the vectors match a local build's.
2. ``map_batches`` sends each batch to an :class:`EmbedActor` — one per CPU
   of the cluster by default, each loading the model once. An actor refuses to
   start (loudly) when its node's lakevec version or model fingerprint differs
   from the driver's: a node with other weights must never contribute vectors.
3. The driver collects the vectors as they arrive (a progress bar on stderr),
   puts them back in input order and checks that every text came back.

**Precision** (the backend: sentence-transformers fp32 or bf16, ONNX fp32 or
int8) is resolved once, on the driver, and every actor is told the explicit
result (:func:`~lakevec.embed.ray_actor.candidate_for`): a forced
``--precision`` as given; ``auto`` as the driver's large-build choice (its
cached calibration for the model, else bf16 where the driver's CPU has native
bf16, else fp32), without measuring on the driver. Were each node to resolve
``auto`` itself — from its own CPU flags or calibration — a cluster mixing
CPUs would write vectors of several precisions into one build whose manifest
records one, and which records got which would depend on scheduling.

**Faults.** Ray Data restarts actors lost with their node and re-runs the
lost blocks elsewhere (Ray's retries); what cannot be finished raises
:class:`~lakevec.errors.ClusterError` (exit 1). Nothing is written before
``encode`` returns, so a failed distributed build leaves the live snapshot as
it was, like any failed build.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from lakevec import __version__
from lakevec.embed.base import Embedder, Vectors, verified_cosine
from lakevec.embed.ray_actor import EmbedActor, backend_of, candidate_for
from lakevec.embed.ray_cluster import console_log_path, console_to, ray_session
from lakevec.errors import ClusterError, LakevecError, ModelMismatchError, UsageProblem
from lakevec.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_RAY_CPUS_PER_ACTOR,
    RAY_BLOCKS_PER_ACTOR,
    RAY_MAX_BATCHES_PER_BLOCK,
)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to embed.

    ``address``: a Ray address (``host:6379``, ``ray://host:10001``, ``auto``),
    or None for Ray's default (``$RAY_ADDRESS``, else a cluster started on
    this machine, else a new local one). ``actors``: embedding actors (default:
    the cluster's CPUs / ``cpus_per_actor``).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = DEFAULT_RAY_CPUS_PER_ACTOR

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise UsageProblem("--ray-actors must be at least 1")
        if self.cpus_per_actor <= 0:
            raise UsageProblem("CPUs per Ray actor must be positive")


@dataclass
class RayRun:
    """What the last distributed ``encode`` did (for summaries and benchmarks)."""

    actors: int
    blocks: int
    records: int
    seconds: float
    startup_s: float = 0.0  # until the first vectors came back (actors loading the model)
    startup_records: int = 0  # how many came back then
    records_per_node: dict[str, int] = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return len(self.records_per_node)

    @property
    def steady_records_per_s(self) -> float:
        """Throughput once the actors were up (after the first vectors came back)."""
        span = self.seconds - self.startup_s
        return (self.records - self.startup_records) / span if span > 0 else 0.0

    def summary(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (f"ray: embedded {self.records} records on {self.nodes} node(s) with "
                f"{self.actors} actor(s) in {self.seconds:.1f} s ({rate:.1f} records/s; "
                f"first vectors after {self.startup_s:.1f} s)")


def plan_blocks(
    texts: Sequence[str], batch_size: int, actors: int
) -> list[npt.NDArray[np.int64]]:
    """Input positions per Ray Data block: longest text first, each block whole batches.

    The order is a local build's (a stable sort by descending length), so a
    block's batches are the batches a local build would run. A block holds at
    most :data:`RAY_MAX_BATCHES_PER_BLOCK` batches, fewer when that gives
    every actor :data:`RAY_BLOCKS_PER_ACTOR` blocks to work on.
    """
    if batch_size < 1 or actors < 1:
        raise UsageProblem("batch size and actors must be at least 1")
    order = np.asarray(sorted(range(len(texts)), key=lambda i: -len(texts[i])), dtype=np.int64)
    batches = math.ceil(len(texts) / batch_size)
    per_block = batch_size * max(1, min(RAY_MAX_BATCHES_PER_BLOCK,
                                        batches // (actors * RAY_BLOCKS_PER_ACTOR)))
    return [order[s : s + per_block] for s in range(0, len(order), per_block)]


class RayEmbedder:
    """Embeds on a Ray cluster with the same model, precision and identity as ``local``.

    ``spec``, ``model_id``, ``fingerprint``, ``precision`` and ``dimension``
    are the local embedder's, so the index manifest is the one a local build
    writes; ``local`` is also what a build exports for queries. The driver
    never loads the weights itself: the dimension comes from the actors'
    vectors (their model has the driver's fingerprint), so with a cached
    query export a distributed build does not import torch here.
    """

    def __init__(self, local: Embedder, options: RayOptions | None = None) -> None:
        self.local = local
        self.options = options or RayOptions()
        self.spec = local.spec
        self.model_id = local.model_id
        self.fingerprint = local.fingerprint
        # The one backend every actor uses, decided here (see the module docstring).
        self.candidate = candidate_for(local)
        self.last_run: RayRun | None = None
        self._dimension: int | None = None
        self._cosine: float | None = None

    @property
    def backend(self) -> str:
        return backend_of(self.local, self.candidate)[0]

    @property
    def precision(self) -> str:
        return backend_of(self.local, self.candidate)[1]

    @property
    def equivalence_cosine(self) -> float | None:
        """The lowest verified cosine to sentence-transformers fp32 any actor reported."""
        return self._cosine

    @property
    def dimension(self) -> int:
        return self._dimension if self._dimension is not None else self.local.dimension

    def encode(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
    ) -> Vectors:
        """Vectors of ``texts`` in input order, embedded by the cluster's actors."""
        if not len(texts):
            return np.empty((0, self.dimension), dtype=np.float32)
        log = console_log_path()
        try:
            with console_to(log) as bar_stream, ray_session(self.options.address) as ray:
                out, self.last_run = self._run(ray, texts, batch_size, progress, bar_stream)
        except LakevecError:
            raise
        except Exception as exc:  # Ray's and Ray Data's own exceptions
            raise translate_failure(exc, log) from exc
        log.unlink(missing_ok=True)
        self._dimension = out.shape[1]
        if progress:
            print(self.last_run.summary(), file=sys.stderr)
        return out

    def pool_size(self, ray: Any) -> int:
        """Actors to start: the option, else one per ``cpus_per_actor`` CPUs of the cluster."""
        if self.options.actors is not None:
            return self.options.actors
        cpus = float(ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // self.options.cpus_per_actor))

    def _run(
        self, ray: Any, texts: Sequence[str], batch_size: int, progress: bool,
        bar_stream: IO[str],
    ) -> tuple[Vectors, RayRun]:
        import pyarrow as pa
        from ray.data import ActorPoolStrategy
        from tqdm import tqdm

        t0 = time.perf_counter()
        actors = self.pool_size(ray)
        blocks = plan_blocks(texts, batch_size, actors)
        actors = min(actors, len(blocks))
        tables = [pa.table({"i": pa.array(idx, pa.int64()),
                            "text": pa.array([texts[i] for i in idx], pa.large_string())})
                  for idx in blocks]
        mapped = ray.data.from_arrow(tables).map_batches(
            EmbedActor,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
            num_cpus=self.options.cpus_per_actor,
            fn_constructor_kwargs={
                "spec": self.spec, "candidate": self.candidate,
                "fingerprint": self.fingerprint, "version": __version__,
                "batch_size": batch_size,
            },
            udf_modifying_row_count=False,
        )
        out: Vectors | None = None
        startup, first = 0.0, 0
        cosines: list[float] = []
        done = np.zeros(len(texts), dtype=bool)
        per_node: Counter[str] = Counter()
        with tqdm(total=len(texts), desc=f"embedding on ray ({self.precision})", unit="rec",
                  file=bar_stream, disable=not progress, dynamic_ncols=True) as bar:
            for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                idx = np.asarray(batch["i"], dtype=np.int64)
                vectors = np.asarray(batch["vec"], dtype=np.float32)
                if out is None:
                    out = np.empty((len(texts), vectors.shape[-1]), dtype=np.float32)
                    startup = time.perf_counter() - t0
                    first = len(idx)
                if vectors.shape != (len(idx), out.shape[1]):
                    raise ClusterError(f"an actor returned vectors of shape {vectors.shape}, "
                                       f"expected ({len(idx)}, {out.shape[1]})")
                fresh = int((~done[idx]).sum())
                out[idx] = vectors
                done[idx] = True
                per_node.update(str(n) for n in batch["node"])
                cosines.extend(float(c) for c in batch["cos"] if not np.isnan(c))
                bar.update(fresh)
        if out is None or not done.all():
            raise ClusterError(f"the cluster returned {int(done.sum())} of {len(texts)} vectors")
        self._cosine = min(cosines) if cosines else verified_cosine(self.local)
        return out, RayRun(actors=actors, blocks=len(blocks), records=len(texts),
                           seconds=time.perf_counter() - t0, startup_s=startup,
                           startup_records=first, records_per_node=dict(per_node))


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: Ray's ``cause``, ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return seen


def translate_failure(exc: BaseException, log: Any) -> LakevecError:
    """The lakevec error behind a Ray failure (an actor's refusal), else a ClusterError.

    A task's exception comes back as a class deriving from both Ray's error
    and the original (its ``cause`` holds the original); an actor that failed
    to start comes back as an ``ActorDiedError`` whose text ends with the
    original traceback's last line (``lakevec.errors.Name: message``).
    """
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, LakevecError) and type(cause).__module__ == "lakevec.errors":
            return _same_kind(type(cause).__name__, str(cause))
    for cause in causes:
        found = _REMOTE_ERROR.findall(str(cause))
        if found:
            name, message = found[-1]
            return _same_kind(name, message.strip())
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return ClusterError(f"distributed embedding on Ray failed: {first} (Ray's console "
                        f"output: {log})")


# The last line of a remote lakevec exception's traceback.
_REMOTE_ERROR = re.compile(r"^lakevec\.errors\.(\w+): (.+)$", re.MULTILINE)


def _same_kind(name: str, message: str) -> LakevecError:
    """An error of the remote class when it is one an actor raises, else ClusterError."""
    kind = ModelMismatchError if name == ModelMismatchError.__name__ else ClusterError
    return kind(message)
