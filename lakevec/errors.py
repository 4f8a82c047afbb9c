"""Domain exceptions.

Every message names the fix. The CLI maps :class:`UsageProblem` to exit code 2
and every other :class:`LakevecError` to exit code 1.
"""

from __future__ import annotations


class LakevecError(Exception):
    """Base class for every error lakevec raises on purpose."""


class UsageProblem(LakevecError):
    """The caller asked for something impossible (bad flag value, empty task...)."""


class CorpusError(LakevecError):
    """The corpus file is missing, unreadable, empty or (with --strict) malformed."""


class IndexMissingError(LakevecError):
    """No index snapshot exists where one was expected."""


class IndexCorruptError(LakevecError):
    """An index snapshot failed manifest or checksum verification."""


class ModelMismatchError(LakevecError):
    """The embedding model does not match the one the index was built with."""


class ModelLoadError(LakevecError):
    """The embedding model could not be loaded."""


class IndexLockedError(LakevecError):
    """Another process holds the index writer lock."""


class GatewayError(LakevecError):
    """The chat gateway failed (timeout, refused, non-2xx, garbage)."""


class EvidenceError(LakevecError):
    """The evidence log could not be written."""


class TapeError(LakevecError):
    """A recorded tape is missing, unreadable, damaged or cannot be written.

    ``call`` is the 1-based model call whose record is damaged, when known.
    """

    def __init__(self, message: str, call: int | None = None) -> None:
        super().__init__(message)
        self.call = call


class TapeMismatch(LakevecError):
    """Replaying a tape, today's code sent a request the tape does not hold.

    ``call`` is the 1-based model call where the replay left the tape.
    """

    def __init__(self, call: int, message: str) -> None:
        super().__init__(f"call {call}: {message}")
        self.call = call
        self.detail = message


class ExportError(LakevecError):
    """The model cannot be exported to ONNX, or the export does not match the model."""


class ServiceError(LakevecError):
    """The lakevec service could not be reached or failed the request."""


class PortInUseError(LakevecError):
    """``lakevec serve`` cannot listen: another process holds the port."""


class ClusterError(LakevecError):
    """``--ray``: Ray is not installed, the cluster is unreachable, or it failed the embedding."""


class ReportError(LakevecError):
    """``lakevec report`` cannot write its HTML file."""


# Internal signals (not LakevecError: they never reach a user as such).


class JsonTooDeep(ValueError):
    """JSON arrays/objects nest deeper than the caller's limit."""


class GraphSearchShort(RuntimeError):
    """hnswlib found fewer than ``k`` neighbours (many deleted elements)."""


# Local model and A/B experiments (issue 11).


class LocalModelError(ModelLoadError):
    """The local chat model (a GGUF for llama.cpp) is missing, not a GGUF, or cannot load."""


class TaskFileError(LakevecError):
    """An A/B task file is missing, unreadable, empty or has invalid lines."""
