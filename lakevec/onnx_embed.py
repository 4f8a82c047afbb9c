"""Torch-free query embeddings: a verified ONNX export of the index's model.

Importing torch takes 4–6 s here, which would dominate every fresh
``lakevec search``. So ``lakevec build-index`` (which has torch loaded anyway)
exports the model once per model fingerprint: the HF transformer with the
sentence-transformers pooling and L2 normalisation inside the graph
(``torch.onnx``), plus the model's ``tokenizer.json``. The export is checked
against sentence-transformers in fp32 (cosine ≥ :data:`MIN_COSINE` on sample
texts) and only then moved into place, atomically::

    $LAKEVEC_CACHE_DIR (default $XDG_CACHE_HOME/lakevec or ~/.cache/lakevec)
      onnx/<fingerprint>/
        model.onnx      transformer + pooling + normalisation, fp32
        tokenizer.json  the model's fast tokenizer
        export.json     ExportInfo: what was exported and how well it matched

At query time :class:`OnnxEmbedder` needs only onnxruntime and tokenizers
(~0.3 s to import). No export, or an unusable one, means the caller falls
back to sentence-transformers (:func:`lakevec.embed.load_query_embedder`).
This module must not import torch at module level.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from lakevec.embed import DEFAULT_BATCH_SIZE, ChunkedEncoder, Vectors, normalize
from lakevec.errors import LakevecError
from lakevec.files import fsync_path

if TYPE_CHECKING:
    from lakevec.embed import SentenceTransformerEmbedder

EXPORT_FORMAT = 1
MIN_COSINE = 0.999
OPSET = 17
INFO_FILE = "export.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# Set to 1 to skip the ONNX path at query time (benchmarks, debugging).
DISABLE_ENV = "LAKEVEC_NO_ONNX"

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


class ExportError(LakevecError):
    """The model cannot be exported, or the export does not match the model."""


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


def cache_root() -> Path:
    """Where lakevec caches derived model files (``$LAKEVEC_CACHE_DIR`` overrides)."""
    if env := os.environ.get("LAKEVEC_CACHE_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lakevec"


def export_dir(fingerprint: str) -> Path:
    return cache_root() / "onnx" / fingerprint


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


class OnnxEmbedder(ChunkedEncoder):
    """Embeds with onnxruntime + tokenizers from an export; never imports torch."""

    backend = "onnx"
    precision = "fp32"

    def __init__(self, spec: str, model_id: str, target: Path, info: ExportInfo) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.spec = spec
        self.model_id = model_id
        self.fingerprint = info.fingerprint
        self._dim = info.dimension
        self.export_dir = target
        self.info = info
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        # No busy-waiting worker threads: queries are single, latency-bound
        # calls, and spinning threads steal the CPU from the rest of the process
        # (HNSW search, a server's other requests, a build's torch encoder).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(target / MODEL_FILE), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
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

    def encode_batch(
        self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Vectors:
        """Encode one list of texts in input order."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            if self.info.lowercase:
                batch = [t.lower() for t in batch]
            enc = self._tokenizer.encode_batch(batch)
            feed = {
                "input_ids": np.asarray([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.asarray([e.type_ids for e in enc], dtype=np.int64),
            }
            result = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
            out[start : start + len(batch)] = result[0]
        # The graph normalises already; re-normalising in numpy is cheap and
        # keeps exported models without a Normalize module consistent too.
        return normalize(out)

    @property
    def dimension(self) -> int:
        return self._dim

    def _label(self) -> str:
        return "embedding (onnx)"


def open_export(spec: str, model_id: str, fingerprint: str) -> OnnxEmbedder | None:
    """An :class:`OnnxEmbedder` for the model, or None (no export, disabled, unusable)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    target = export_dir(fingerprint)
    info = read_export_info(target, fingerprint)
    if info is None:
        return None
    try:
        return OnnxEmbedder(spec, model_id, target, info)
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 — onnxruntime raises its own types for a bad graph
        # A damaged export must not stop a search: say so and use the model.
        print(
            f"note: ONNX query model {target} is unusable ({exc}); "
            "using sentence-transformers instead",
            file=sys.stderr,
        )
        return None


# ─── export (build time; imports torch) ──────────────────────────────────────


def _pipeline(model: Any) -> tuple[Literal["mean", "cls"], bool, bool]:
    """(pooling, normalize, lowercase) of a plain Transformer→Pooling→[Normalize] model."""
    modules = [type(m).__name__ for m in model]
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"unsupported module stack {modules} (only Transformer→Pooling)")
    mode = getattr(model[1], "pooling_mode", None)
    if mode is None:  # sentence-transformers < 6 keeps one flag per mode
        cfg = model[1].get_config_dict()
        mode = "mean" if cfg.get("pooling_mode_mean_tokens") else (
            "cls" if cfg.get("pooling_mode_cls_token") else str(cfg)
        )
    if mode not in ("mean", "cls"):
        raise ExportError(f"unsupported pooling {mode!r} (only mean or cls)")
    pooling: Literal["mean", "cls"] = "mean" if mode == "mean" else "cls"
    return pooling, len(modules) == 3, bool(getattr(model[0], "do_lower_case", False))


def _torch_export(model: Any, path: Path, pooling: str, normalize_out: bool) -> None:
    import torch

    hf = model[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hf = hf

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.hf(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize_out:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    # Trace with a padded row so the attention-mask path is the one recorded.
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    ids[1, 8:] = 0
    mask[1, 8:] = 0
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter is deprecated but needs no onnxscript; its
        # tracer warnings concern shape checks that are constant for BERT-style
        # encoders, and the numeric verification below is the real guard.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(),
            (ids, mask, torch.zeros_like(ids)),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
        )


def export_model(
    embedder: SentenceTransformerEmbedder,
    target: Path,
    *,
    texts: Sequence[str] = VERIFY_TEXTS,
    min_cosine: float = MIN_COSINE,
) -> ExportInfo:
    """Export, verify and atomically install the ONNX query model at ``target``.

    The export is built in a temporary sibling directory and renamed into
    place only after its vectors match sentence-transformers (fp32) at
    ``min_cosine`` for every text, encoded both batched and one by one.
    """
    from importlib.metadata import version

    model = embedder.model
    pooling, normalize_out, lowercase = _pipeline(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _torch_export(model, tmp / MODEL_FILE, pooling, normalize_out)
        src_tok = embedder.model_dir / TOKENIZER_FILE
        if src_tok.is_file():
            shutil.copyfile(src_tok, tmp / TOKENIZER_FILE)
        elif getattr(model.tokenizer, "backend_tokenizer", None) is not None:
            model.tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        else:
            raise ExportError("the model has no fast tokenizer (tokenizer.json)")
        info = ExportInfo(
            fingerprint=embedder.fingerprint,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            max_seq_length=embedder.max_seq_length,
            lowercase=lowercase,
            pooling=pooling,
            normalize=normalize_out,
            onnx_bytes=(tmp / MODEL_FILE).stat().st_size,
            min_cosine=0.0,
            verified_texts=len(texts),
            opset=OPSET,
            torch=version("torch"),
            onnxruntime=version("onnxruntime"),
            created_at=round(time.time(), 3),
        )
        onnx = OnnxEmbedder(embedder.spec, embedder.model_id, tmp, info)
        ref = embedder.encode_batch(texts, precision="fp32")
        batched = onnx.encode_batch(texts, batch_size=len(texts))
        single = np.vstack([onnx.encode_batch([t]) for t in texts])
        worst = float(min((ref * batched).sum(1).min(), (ref * single).sum(1).min()))
        if worst < min_cosine:
            raise ExportError(
                f"ONNX export differs from sentence-transformers (min cosine {worst:.5f} "
                f"< {min_cosine})"
            )
        info = info.model_copy(update={"min_cosine": round(worst, 6)})
        (tmp / INFO_FILE).write_text(info.model_dump_json(indent=2), encoding="utf-8")
        for name in (MODEL_FILE, TOKENIZER_FILE, INFO_FILE):
            fsync_path(tmp / name)
        if target.exists():
            # Damaged or stale (a valid one is never re-exported): replace it.
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            # A concurrent build installed its own export first; keep that one.
            if read_export_info(target, embedder.fingerprint) is None:
                raise
        fsync_path(target.parent)
        return info
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def ensure_export(embedder: SentenceTransformerEmbedder, *, progress: bool = False) -> str:
    """Export the query model unless a valid export exists; a one-line note either way.

    Never raises: without an export, queries fall back to sentence-transformers.
    """
    target = export_dir(embedder.fingerprint)
    if read_export_info(target, embedder.fingerprint) is not None:
        return f"ONNX query model: {target} (cached)"
    if progress:
        print(f"exporting ONNX query model to {target} ...", file=sys.stderr)
    try:
        info = export_model(embedder, target)
    except ImportError as exc:
        return f"ONNX query model not exported ({exc}); queries will load sentence-transformers"
    except Exception as exc:  # noqa: BLE001 — torch.onnx raises many types; a build must not fail
        return (
            f"ONNX query model not exported ({type(exc).__name__}: {exc}); "
            "queries will load sentence-transformers"
        )
    return f"ONNX query model: {target} (exported, min cosine {info.min_cosine:.6f})"
