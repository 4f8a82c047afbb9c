"""sentence-transformers' precision from the CPU flags: bf16 weights only where the CPU
runs bf16 natively. (``--precision auto`` as a whole is decided by measurement in
:mod:`lakevec.embed.calibrate`; this is its guess before any measurement.)"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal, cast

from lakevec.errors import UsageProblem
from lakevec.settings import PRECISIONS

Precision = Literal["fp32", "bf16"]
# CPU flags with native bf16 matrix instructions; without them torch emulates
# bf16 and a bf16 model is slower than fp32.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def resolve_precision(requested: str = "auto", flags: Iterable[str] | None = None) -> Precision:
    """Turn ``auto|fp32|bf16`` into the precision to embed with.

    ``auto`` picks bf16 only when the CPU has native bf16 instructions
    (``flags``, default: this machine's); forcing ``bf16`` elsewhere works but
    is emulated and slow.
    """
    if requested not in PRECISIONS:
        raise UsageProblem(
            f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if requested == "int8":
        raise UsageProblem("int8 runs on ONNX Runtime, not sentence-transformers "
                           "(load it with lakevec.embed.loader.load_embedder)")
    if requested != "auto":
        return cast(Precision, requested)
    have = cpu_flags() if flags is None else frozenset(flags)
    return "bf16" if have & BF16_CPU_FLAGS else "fp32"
