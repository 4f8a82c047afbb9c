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


class ExportError(LakevecError):
    """The model cannot be exported to ONNX, or the export does not match the model."""


class ServiceError(LakevecError):
    """The lakevec service could not be reached or failed the request."""


class PortInUseError(LakevecError):
    """``lakevec serve`` cannot listen: another process holds the port."""


# Internal signals (not LakevecError: they never reach a user as such).


class JsonTooDeep(ValueError):
    """JSON arrays/objects nest deeper than the caller's limit."""


class GraphSearchShort(RuntimeError):
    """hnswlib found fewer than ``k`` neighbours (many deleted elements)."""
