"""Exporting a sentence-transformers model to ONNX (build time; imports torch).

See :mod:`lakevec.embed.onnx` for the layout of the export cache. The export
is built in a temporary sibling directory and renamed into place only after
its vectors match sentence-transformers (fp32) at ``MIN_COSINE``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lakevec.embed.leftovers import remove_stale_exports
from lakevec.embed.numpy_bert import prepare_numpy_pack
from lakevec.embed.onnx import (
    INFO_FILE,
    MIN_COSINE,
    MODEL_FILE,
    OPSET,
    REFERENCE_FILE,
    TOKENIZER_FILE,
    VERIFY_TEXTS,
    ExportInfo,
    OnnxEmbedder,
    agreement,
    export_dir,
    prepare_query_model,
    read_export_info,
)
from lakevec.embed.sentence import SentenceTransformerEmbedder
from lakevec.errors import ExportError
from lakevec.files import fsync_path, owned_temp_name


def _pipeline(model: Any) -> tuple[Literal["mean", "cls"], bool, bool]:
    """(pooling, normalize, lowercase) of a plain Transformer→Pooling→[Normalize] model."""
    modules = [type(m).__name__ for m in model]
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"unsupported module stack {modules} (only Transformer→Pooling)")
    # getattr: version shims for sentence-transformers' own objects, not our types.
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
    Temporary directories left by dead processes are removed first.
    """
    from importlib.metadata import version

    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(target.parent)
    model = embedder.model
    pooling, normalize_out, lowercase = _pipeline(model)
    tmp = target.parent / owned_temp_name()
    tmp.mkdir()
    try:
        _torch_export(model, tmp / MODEL_FILE, pooling, normalize_out)
        src_tok = embedder.model_dir / TOKENIZER_FILE
        if src_tok.is_file():
            shutil.copyfile(src_tok, tmp / TOKENIZER_FILE)
        elif getattr(model.tokenizer, "backend_tokenizer", None) is not None:  # HF fast tokenizer
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
        worst = agreement(ref, onnx, texts, batch_size=len(texts))
        if worst < min_cosine:
            raise ExportError(
                f"ONNX export differs from sentence-transformers (min cosine {worst:.5f} "
                f"< {min_cosine})"
            )
        info = info.model_copy(update={"min_cosine": round(worst, 6)})
        (tmp / INFO_FILE).write_text(info.model_dump_json(indent=2), encoding="utf-8")
        if tuple(texts) == VERIFY_TEXTS:
            np.save(tmp / REFERENCE_FILE, ref.astype(np.float32), allow_pickle=False)
            fsync_path(tmp / REFERENCE_FILE)
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

    Also removes temporary export directories of dead processes. Never
    raises: without an export, queries fall back to sentence-transformers.
    """
    target = export_dir(embedder.fingerprint)
    remove_stale_exports(target.parent)
    if (cached := read_export_info(target, embedder.fingerprint)) is not None:
        prepare_query_model(target, cached)  # exports made before it existed get it too
        pack = prepare_numpy_pack(target, cached, embedder.model_dir)
        return f"ONNX query model: {target} (cached); numpy pack: {pack}"
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
    prepare_query_model(target, info)
    pack = prepare_numpy_pack(target, info, embedder.model_dir)
    return (f"ONNX query model: {target} (exported, min cosine {info.min_cosine:.6f}; "
            f"numpy pack: {pack})")
