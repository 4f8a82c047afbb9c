"""Which embedding backend is fastest on this machine: measured once, cached, never slower.

``--precision auto`` does not guess from CPU flags alone: on its first large
build on a machine it times every available backend on a sample of the texts
it is about to embed, checks each against sentence-transformers fp32 (the
reference) with the quality guard of its precision, and keeps the fastest
that passes *and* beats fp32 by :data:`~lakevec.settings.CALIBRATION_MARGIN`
(so noise on a busy machine can never make it pick something slower than
fp32). The result is cached per machine (CPU model, flags, core count,
runtime versions) and model fingerprint::

    <cache root>/calibration/<model fingerprint>-<machine key>.json

Candidates (``name``: backend, precision):

* ``st-fp32``  sentence-transformers, fp32 weights: the baseline and reference
* ``st-bf16``  sentence-transformers, bf16 weights: only where the CPU has
  native bf16 (emulated bf16 measured 5.6x slower than fp32, not worth timing)
* ``onnx-fp32`` ONNX Runtime, the verified fp32 export
* ``onnx-int8`` ONNX Runtime, int8 weights quantized locally
  (:mod:`lakevec.embed.onnx_quant`)

:func:`measure` and :func:`choose` take plain callables and numbers, so the
decision logic is tested with fakes; :mod:`lakevec.embed.auto` wires in the
real embedders.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakevec.embed.base import Vectors
from lakevec.embed.precision import BF16_CPU_FLAGS, cpu_flags
from lakevec.files import write_atomic
from lakevec.settings import (
    CALIBRATION_MARGIN,
    CALIBRATION_ROUNDS,
    CALIBRATION_TEXTS,
    MIN_COSINE_BY_PRECISION,
    cache_root,
)

CALIBRATION_DIR = "calibration"
CALIBRATION_FORMAT = 1
BASELINE = "st-fp32"
#: Every candidate: name -> (backend, precision).
CANDIDATES: dict[str, tuple[str, str]] = {
    "st-fp32": ("sentence-transformers", "fp32"),
    "st-bf16": ("sentence-transformers", "bf16"),
    "onnx-fp32": ("onnx", "fp32"),
    "onnx-int8": ("onnx", "int8"),
}

Encode = Callable[[list[str]], Vectors]


@dataclass(frozen=True)
class Measurement:
    """One candidate's speed and quality on the calibration texts."""

    name: str
    records_per_s: float
    min_cosine: float  # to sentence-transformers fp32, over every calibration text


@dataclass(frozen=True)
class Calibration:
    """The measured candidates and the one ``auto`` uses on this machine."""

    choice: str
    measurements: tuple[Measurement, ...]
    machine: str
    texts: int
    mean_chars: float
    created_at: float

    def speedup(self, name: str | None = None) -> float:
        """records/s of ``name`` (default: the choice) over the fp32 baseline."""
        rates = {m.name: m.records_per_s for m in self.measurements}
        return rates[name or self.choice] / rates[BASELINE]

    def to_json(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        if data.get("format") != CALIBRATION_FORMAT:
            raise ValueError("unknown calibration format")
        measurements = tuple(
            Measurement(str(m["name"]), float(m["records_per_s"]), float(m["min_cosine"]))
            for m in data["measurements"]
        )
        names = {m.name for m in measurements}
        choice = str(data["choice"])
        if choice not in CANDIDATES or choice not in names or BASELINE not in names:
            raise ValueError("calibration without its choice or baseline")
        return cls(choice, measurements, str(data["machine"]), int(data["texts"]),
                   float(data["mean_chars"]), float(data["created_at"]))


def candidates_for(flags: Iterable[str], *, onnx: bool) -> list[str]:
    """The candidates worth timing on a CPU with ``flags`` (``onnx``: an export exists)."""
    names = [BASELINE]
    if frozenset(flags) & BF16_CPU_FLAGS:
        names.append("st-bf16")
    if onnx:
        names += ["onnx-fp32", "onnx-int8"]
    return names


def choose(
    measurements: Sequence[Measurement],
    *,
    margin: float = CALIBRATION_MARGIN,
    guards: Mapping[str, float] = MIN_COSINE_BY_PRECISION,
) -> str:
    """The fastest candidate that passes its quality guard and beats fp32 by ``margin``.

    Falls back to the fp32 baseline, so the choice is never measured slower than fp32.
    """
    rates = {m.name: m.records_per_s for m in measurements}
    if BASELINE not in rates:
        raise ValueError("the fp32 baseline was not measured")
    best, best_rate = BASELINE, rates[BASELINE]
    for m in measurements:
        precision = CANDIDATES[m.name][1]
        if m.name == BASELINE or m.min_cosine < guards[precision]:
            continue
        if m.records_per_s >= margin * rates[BASELINE] and m.records_per_s > best_rate:
            best, best_rate = m.name, m.records_per_s
    return best


def calibration_sample(texts: Sequence[str], n: int = CALIBRATION_TEXTS) -> list[str]:
    """``n`` texts spread evenly over the length distribution of ``texts`` (deterministic)."""
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    if len(order) <= n:
        return [texts[i] for i in order]
    step = len(order) / n
    return [texts[order[int(k * step + step / 2)]] for k in range(n)]


def measure(
    encoders: Mapping[str, Encode],
    texts: list[str],
    *,
    rounds: int = CALIBRATION_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Measurement]:
    """Time every encoder on ``texts`` (rounds interleaved, best round kept).

    The first call of each encoder is a warm-up whose vectors give the cosine
    to the baseline (``encoders[BASELINE]``).
    """
    ref = encoders[BASELINE](texts)
    cosines = {BASELINE: 1.0}
    for name, encode in encoders.items():
        if name != BASELINE:
            cosines[name] = float((np.asarray(encode(texts)) * ref).sum(1).min())
    best: dict[str, float] = {}
    names = list(encoders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            start = clock()
            encoders[name](texts)
            rate = len(texts) / max(clock() - start, 1e-9)
            best[name] = max(best.get(name, 0.0), rate)
    return [Measurement(n, round(best[n], 2), round(cosines[n], 6)) for n in names]


def machine_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What a cached calibration is valid for: CPU, flags, cores and runtime versions."""
    from importlib.metadata import PackageNotFoundError, version

    model = platform.processor() or platform.machine()
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    versions = []
    for package in ("torch", "onnxruntime"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} -")
    flags = " ".join(sorted(cpu_flags(cpuinfo)))
    return f"{model}; {os.cpu_count()} cpus; {', '.join(versions)}; flags {flags}"


def calibration_file(fingerprint: str, machine: str | None = None) -> Path:
    key = hashlib.sha256((machine or machine_description()).encode()).hexdigest()[:16]
    return cache_root() / CALIBRATION_DIR / f"{fingerprint}-{key}.json"


def read_calibration(fingerprint: str, machine: str | None = None) -> Calibration | None:
    """The cached calibration for this model on this machine; None if absent or unreadable."""
    machine = machine or machine_description()
    try:
        cal = Calibration.from_json(json.loads(calibration_file(fingerprint, machine).read_bytes()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return cal if cal.machine == machine else None


def write_calibration(fingerprint: str, cal: Calibration) -> Path | None:
    """Cache ``cal``; the file, or None when the cache is not writable (never raises)."""
    path = calibration_file(fingerprint, cal.machine)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(cal.to_json(), indent=2).encode())
    except OSError:
        return None
    return path


def calibrate(
    encoders: Mapping[str, Encode],
    texts: Sequence[str],
    *,
    machine: str,
    rounds: int = CALIBRATION_ROUNDS,
    n: int = CALIBRATION_TEXTS,
    clock: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Measure ``encoders`` on a sample of ``texts`` and choose (see :func:`choose`)."""
    sample = calibration_sample(texts, n)
    found = measure(encoders, sample, rounds=rounds, clock=clock)
    return Calibration(
        choice=choose(found),
        measurements=tuple(found),
        machine=machine,
        texts=len(sample),
        mean_chars=round(sum(map(len, sample)) / max(len(sample), 1), 1),
        created_at=round(time.time(), 3),
    )
