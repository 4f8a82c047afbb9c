"""Torch-free query embeddings: a verified ONNX export of the index's model.

Importing torch takes 4–6 s here, which would dominate every fresh
``lakevec search``. So ``lakevec build-index`` (which has torch loaded anyway)
exports the model once per model fingerprint: the HF transformer with the
sentence-transformers pooling and L2 normalisation inside the graph
(``torch.onnx``), plus the model's ``tokenizer.json``. The export is checked
against sentence-transformers in fp32 (cosine ≥ :data:`MIN_COSINE` on sample
texts) and only then moved into place, atomically::

    <cache root> (settings.cache_root(): $LAKEVEC_CACHE_DIR or ~/.cache/lakevec)
      onnx/<fingerprint>/
        model.onnx      transformer + pooling + normalisation, fp32
        tokenizer.json  the model's fast tokenizer
        export.json     ExportInfo: what was exported and how well it matched
        model-query.onnx  model.onnx pre-optimised for fast opening (build time, verified)
        reference.npy   sentence-transformers' vectors of VERIFY_TEXTS (exports since the pack)
        bert-fp32.bin, bert.json  the numpy query model (lakevec.embed.numpy_bert)
        model-int8.onnx, int8.json  int8 weights for bulk embedding (lakevec.embed.onnx_quant)
      onnx/.tmp-<pid>-<hex>/   an export in progress (removed once its process is gone)

At query time :class:`OnnxEmbedder` needs only onnxruntime and tokenizers
(~0.3 s to import). No export, or an unusable one, means the caller falls
back to sentence-transformers (:func:`lakevec.embed.loader.load_query_embedder`).
This module must not import torch at module level, nor the torch embedder
(it is only a type here).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lakevec.embed.base import ChunkedEncoder, Vectors, clip_text, normalize, window_chars
from lakevec.embed.leftovers import remove_stale_temp_files
from lakevec.files import owned_temp_name
from lakevec.settings import DEFAULT_BATCH_SIZE, NO_ONNX_ENV, cache_root, env_flag

EXPORT_FORMAT = 1
MIN_COSINE = 0.999
OPSET = 17
INFO_FILE = "export.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# model.onnx with ONNX Runtime's graph optimisations (extended level: no
# CPU-specific kernels) already applied: queries load it with optimisation
# and weight prepacking off, ~30 % faster to open (docs/BENCHMARKS.md).
QUERY_FILE = "model-query.onnx"
# sentence-transformers' fp32 vectors of VERIFY_TEXTS, saved by the export so
# derived models (the numpy pack) are checked against torch without loading it.
REFERENCE_FILE = "reference.npy"
# Verification texts: short and long (past the 256-token truncation), mixed
# case, punctuation, non-ASCII and code, so tokenizer settings must match too.
VERIFY_TEXTS = (
    "x",
    "Restart the ingest worker",
    "How do I rotate the TLS certificate on the API gateway without downtime?",
    "ERROR: connection refused (errno 111) while contacting postgres:5432",
    "Ünïcödé façade — naïve café, 東京, Ελληνικά and emoji 🚀",
    "def handler(event):\n    return {'status': 200, 'body': json.dumps(event)}",
    "Verify the backup; check the checksum; assert the restore works; confirm alerts.",
    "Microstructural development of human newborn cerebral white matter assessed in vivo "
    "by diffusion tensor magnetic resonance imaging.",
    " ".join(
        f"Step {i}: drain node-{i}, cordon it, wait for pods to reschedule, then upgrade "
        "the kubelet and uncordon; if the pod disruption budget blocks eviction, check "
        "which deployment holds it."
        for i in range(12)
    ),
    "UPPER CASE TITLE: Disk Pressure On /var/lib/docker",
    "   leading and trailing whitespace   ",
    "Numbers 1234567890 and ids like a1b2c3d4-e5f6 or v2.3.1-rc4",
)


class ExportInfo(BaseModel):
    """What ``export.json`` records about one ONNX export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1  # EXPORT_FORMAT
    fingerprint: str
    model_id: str
    dimension: int
    max_seq_length: int
    lowercase: bool
    pooling: Literal["mean", "cls"]
    normalize: bool
    onnx_bytes: int
    min_cosine: float
    verified_texts: int
    opset: int
    torch: str
    onnxruntime: str
    created_at: float


def exports_root() -> Path:
    """The directory holding one export directory per model fingerprint."""
    return cache_root() / "onnx"


def export_dir(fingerprint: str) -> Path:
    return exports_root() / fingerprint


def read_export_info(target: Path, fingerprint: str) -> ExportInfo | None:
    """The export's info if ``target`` holds a complete export for ``fingerprint``.

    Checks the file sizes, not a checksum: hashing the 90 MB graph on every
    query would cost ~0.2 s, and onnxruntime rejects a damaged graph anyway.
    """
    try:
        info = ExportInfo.model_validate_json((target / INFO_FILE).read_bytes())
        size = (target / MODEL_FILE).stat().st_size
        has_tokenizer = (target / TOKENIZER_FILE).is_file()
    except (OSError, ValidationError):
        return None
    if info.fingerprint != fingerprint or size != info.onnx_bytes or not has_tokenizer:
        return None
    return info


class ExportEncoder(ChunkedEncoder):
    """Tokenises like sentence-transformers with an export's ``tokenizer.json``.

    Subclasses run the model on the token arrays (:meth:`_run`): ONNX Runtime
    here, numpy in :mod:`lakevec.embed.numpy_bert`. ``min_cosine`` is how
    closely their vectors were verified to match sentence-transformers fp32.
    """

    backend: str = "onnx"

    def __init__(
        self,
        spec: str,
        model_id: str,
        target: Path,
        info: ExportInfo,
        *,
        precision: str = "fp32",
        min_cosine: float | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self.model_id = model_id
        self.fingerprint = info.fingerprint
        self.precision = precision
        self._dim = info.dimension
        self.export_dir = target
        self.info = info
        self.min_cosine = info.min_cosine if min_cosine is None else min_cosine
        tok = Tokenizer.from_file(str(target / TOKENIZER_FILE))
        # Match sentence-transformers: truncate at max_seq_length, pad to the
        # longest text of the batch (tokenizer.json itself may pad to 128).
        tok.enable_truncation(max_length=info.max_seq_length)
        pad = tok.padding or {}
        tok.enable_padding(
            pad_id=int(pad.get("pad_id", 0)),
            pad_type_id=int(pad.get("pad_type_id", 0)),
            pad_token=str(pad.get("pad_token", "[PAD]")),
        )
        self._tokenizer = tok

    @property
    def equivalence_cosine(self) -> float | None:
        """Min cosine to sentence-transformers fp32 measured when this graph was verified."""
        return self.min_cosine

    @property
    def max_chars(self) -> int:
        """Characters of a text handed to the tokenizer (see :func:`clip_text`)."""
        return window_chars(self.info.max_seq_length)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled (not necessarily normalised) vectors of one tokenised batch."""
        raise NotImplementedError

    def encode_batch(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Vectors:
        """Encode one list of texts in input order."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        limit = self.max_chars
        for start in range(0, len(texts), batch_size):
            batch = [clip_text(t, limit) for t in texts[start : start + batch_size]]
            if self.info.lowercase:
                batch = [t.lower() for t in batch]
            enc = self._tokenizer.encode_batch(batch)
            feed = {
                "input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in enc], dtype=np.int64),
            }
            out[start : start + len(batch)] = self._run(feed)
        # The graph normalises already; re-normalising in numpy is cheap and
        # keeps exported models without a Normalize module consistent too.
        return normalize(out)

    @property
    def dimension(self) -> int:
        return self._dim

    def _label(self) -> str:
        return f"embedding ({self.backend} {self.precision})"


class OnnxEmbedder(ExportEncoder):
    """Embeds with onnxruntime + tokenizers from an export; never imports torch.

    ``model_file`` picks the graph inside the export directory (the fp32
    export, or the int8 model derived from it). Queries keep
    ``throughput=False`` (no busy-waiting worker threads); bulk embedding in a
    build sets it to let ONNX Runtime spin between batches.
    """

    backend: str = "onnx"

    def __init__(
        self,
        spec: str,
        model_id: str,
        target: Path,
        info: ExportInfo,
        *,
        model_file: str = MODEL_FILE,
        precision: str = "fp32",
        min_cosine: float | None = None,
        throughput: bool = False,
        preoptimized: bool = False,
    ) -> None:
        import onnxruntime as ort

        super().__init__(spec, model_id, target, info, precision=precision,
                         min_cosine=min_cosine)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        if not throughput:
            # No busy-waiting worker threads: queries are single, latency-bound
            # calls, and spinning threads steal the CPU from the rest of the
            # process (HNSW search, a server's other requests).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if preoptimized:
            # Optimised when it was written; prepacking weights pays off over
            # many batches, not for one query.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.add_session_config_entry("session.disable_prepacking", "1")
        self._session = ort.InferenceSession(
            str(target / model_file), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        result = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
        return np.asarray(result[0])


def agreement(want: Vectors, encoder: ChunkedEncoder, texts: Sequence[str], *,
              batch_size: int) -> float:
    """Min cosine of ``encoder``'s vectors of ``texts`` to ``want``, encoded both in
    batches of ``batch_size`` (padding) and one by one: the check every derived model passes."""
    batched = encoder.encode_batch(texts, batch_size=batch_size)
    single = np.vstack([encoder.encode_batch([t]) for t in texts])
    return float(min((want * batched).sum(1).min(), (want * single).sum(1).min()))


def usable_export(fingerprint: str) -> tuple[Path, ExportInfo] | None:
    """The model's export directory and info, or None (none, damaged, or ``LAKEVEC_NO_ONNX``)."""
    if env_flag(NO_ONNX_ENV):
        return None
    target = export_dir(fingerprint)
    info = read_export_info(target, fingerprint)
    return None if info is None else (target, info)


def open_export(spec: str, model_id: str, fingerprint: str) -> OnnxEmbedder | None:
    """An :class:`OnnxEmbedder` for the model, or None (no export, disabled, unusable)."""
    found = usable_export(fingerprint)
    return None if found is None else open_graph(spec, model_id, *found)


def open_graph(
    spec: str, model_id: str, target: Path, info: ExportInfo,
    *, instead: str = "sentence-transformers",
) -> OnnxEmbedder | None:
    """The export's graph at ``target`` (pre-optimised copy first), or None if unusable.

    ``instead`` names what the caller uses when the graph is unusable (for the note).
    """
    try:
        if (target / QUERY_FILE).is_file():
            try:
                return OnnxEmbedder(spec, model_id, target, info, model_file=QUERY_FILE,
                                    preoptimized=True)
            except ImportError:
                raise
            except Exception:  # noqa: BLE001, S110 — a damaged copy: the original follows
                pass
        return OnnxEmbedder(spec, model_id, target, info)
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 — onnxruntime raises its own types for a bad graph
        # A damaged export must not stop a search: say so and use the model.
        print(
            f"note: ONNX query model {target} is unusable ({exc}); using {instead} instead",
            file=sys.stderr,
        )
        return None


def prepare_query_model(target: Path, info: ExportInfo) -> bool:
    """Write :data:`QUERY_FILE` (the export, pre-optimised) if it is missing; True when present.

    Installed only when its vectors equal the export's on :data:`VERIFY_TEXTS`
    (cosine >= 0.99999). Build time only (readers never write); never raises.
    """
    remove_stale_temp_files(target)
    if (target / QUERY_FILE).is_file():
        return True
    tmp = target / owned_temp_name(QUERY_FILE)
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(target / MODEL_FILE), sess_options=opts,
                             providers=["CPUExecutionProvider"])
        ref = OnnxEmbedder(info.fingerprint, info.model_id, target, info)
        fast = OnnxEmbedder(info.fingerprint, info.model_id, target, info, model_file=tmp.name,
                            preoptimized=True)
        if agreement(ref.encode_batch(VERIFY_TEXTS), fast, VERIFY_TEXTS,
                     batch_size=len(VERIFY_TEXTS)) < 0.99999:
            return False
        os.replace(tmp, target / QUERY_FILE)
        return True
    except Exception:  # noqa: BLE001 — an optimisation only: queries use model.onnx then
        return False
    finally:
        tmp.unlink(missing_ok=True)
