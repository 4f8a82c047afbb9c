"""Request counts by status class and latency percentiles, per endpoint."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from lakevec.service.schemas import EndpointStats
from lakevec.service.settings import LATENCY_WINDOW

#: The endpoints counted separately; every other path is counted as "other".
ENDPOINTS = ("/vectors/search", "/replay", "/healthz", "/stats")


@dataclass
class _EndpointMetrics:
    requests: int = 0
    by_class: dict[int, int] = field(default_factory=lambda: {2: 0, 4: 0, 5: 0})
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def stats(self) -> EndpointStats:
        lat = np.asarray(self.latencies, dtype=np.float64)
        p50 = float(np.percentile(lat, 50)) if len(lat) else None
        p99 = float(np.percentile(lat, 99)) if len(lat) else None
        return EndpointStats(
            requests=self.requests,
            status_2xx=self.by_class.get(2, 0),
            status_4xx=self.by_class.get(4, 0),
            status_5xx=self.by_class.get(5, 0),
            p50_ms=None if p50 is None else round(p50, 3),
            p99_ms=None if p99 is None else round(p99, 3),
            window=len(lat),
        )


class Metrics:
    """Request counts and latency windows per endpoint (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path = {p: _EndpointMetrics() for p in (*ENDPOINTS, "other")}

    def record(self, path: str, status: int, ms: float) -> None:
        key = path if path in self._by_path else "other"
        with self._lock:
            m = self._by_path[key]
            m.requests += 1
            m.by_class[status // 100] = m.by_class.get(status // 100, 0) + 1
            m.latencies.append(ms)

    def snapshot(self) -> dict[str, EndpointStats]:
        with self._lock:
            return {p: m.stats() for p, m in self._by_path.items()}
