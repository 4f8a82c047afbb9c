"""What ``lakevec serve`` is configured with, its request limits and its bind rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakevec.errors import UsageProblem
from lakevec.settings import (
    DEFAULT_API,
    DEFAULT_HOST,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    HTTP_API_MODES,
    TOKEN_ENV,
)

# ─── request limits (part of the HTTP contract; documented in the README) ────

MAX_BODY_BYTES = 64 * 1024
MAX_K = 100
MAX_QUERY_CHARS = 4096
# A served replay task is bounded by the body cap anyway; this keeps the
# message about it precise (the CLI's own limit is settings.MAX_TASK_CHARS).
MAX_SERVED_TASK_CHARS = 32_768
MAX_FILTER_VALUES = 32
MAX_FILTER_VALUE_CHARS = 256
MIN_TOKEN_CHARS = 16
# The background check never spins faster than this, even with --poll-interval 0.
MIN_POLL_INTERVAL = 0.05
# After a failed load of a snapshot, wait this long before trying it again.
RELOAD_BACKOFF = 5.0
LATENCY_WINDOW = 4096


class ServerSettings(BaseModel):
    """Everything ``lakevec serve`` needs; JSON-serialisable for worker processes.

    ``gateway_url``, ``local_model`` and ``escalation_model`` default to the
    environment (``$LH_GATEWAY_URL`` ...) when left None.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_dir: Path
    evidence_path: Path
    model: str | None = None
    token: str | None = Field(default=None, repr=False)
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    gateway_url: str | None = None
    api: str = DEFAULT_API
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)
    local_model: str | None = None
    escalation_model: str | None = None
    poll_interval: float = Field(DEFAULT_POLL_INTERVAL, ge=0)
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    checksums: bool = True

    @field_validator("api")
    @classmethod
    def _known_api(cls, value: str) -> str:
        if value not in HTTP_API_MODES:
            raise ValueError(
                f"unknown gateway api {value!r}; use one of {', '.join(HTTP_API_MODES)}"
            )
        return value


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse an exposed bind without a token, and a token too short to resist guessing."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageProblem(
            f"the token is {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if not is_loopback(host) and not token:
        raise UsageProblem(
            f"refusing to listen on non-loopback address {host!r} without a token — "
            f"set ${TOKEN_ENV} (or --token) or bind 127.0.0.1"
        )
