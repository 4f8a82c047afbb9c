"""HTTP client for a running ``lakevec serve`` (used by ``search``/``replay --server``).

The client loads no model and no index: the service does the work. The
bearer token comes from ``$LAKEVEC_TOKEN`` unless given. Service errors map
onto lakevec's exit codes: a 4xx about the request is a
:class:`~lakevec.errors.UsageProblem` (exit 2), anything else (unreachable,
refused token, 5xx) a :class:`~lakevec.errors.ServiceError` (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
import httpx
from click.core import ParameterSource

from lakevec.corpus import PlaybookRecord
from lakevec.errors import ServiceError, UsageProblem
from lakevec.replay.engine import ReplayRequest
from lakevec.replay.evidence import ReplayResult
from lakevec.retrieval.base import Hit
from lakevec.settings import (
    DEFAULT_RETRIEVER,
    DEFAULT_SEARCH_K,
    DEFAULT_TIMEOUT,
    INDEX_RETRIEVERS,
    TOKEN_ENV,
    env,
)


def check_served(retriever: str) -> None:
    """Refuse a retriever the service does not offer (it serves the index retrievers)."""
    if retriever not in INDEX_RETRIEVERS:
        raise UsageProblem(
            f"--retriever {retriever} is not served; use one of {', '.join(INDEX_RETRIEVERS)}"
        )


class ServiceClient:
    """Thin synchronous client; ``transport`` lets tests call an app in-process."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise UsageProblem(f"--server must be an http:// or https:// URL, got {url!r}")
        self.url = base
        token = token if token is not None else env(TOKEN_ENV)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            resp = self._client.request(
                method, path, json=body,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise ServiceError(f"lakevec service at {self.url} timed out ({exc})") from exc
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"cannot reach lakevec service at {self.url}: {exc} — start it with "
                "`lakevec serve` or drop --server"
            ) from exc
        if resp.is_success:
            try:
                return resp.json()
            except ValueError as exc:
                raise ServiceError(f"{self.url}{path} answered with invalid JSON") from exc
        message = _error_message(resp)
        if resp.status_code == 401:
            raise ServiceError(
                f"lakevec service at {self.url} refused the request ({message}) — "
                f"set ${TOKEN_ENV} to the service's token"
            )
        if resp.status_code in (400, 413, 422):
            raise UsageProblem(f"lakevec service rejected the request: {message}")
        raise ServiceError(f"lakevec service at {self.url} failed: HTTP {resp.status_code}: "
                           f"{message}")

    def search(
        self,
        query: str,
        k: int = DEFAULT_SEARCH_K,
        *,
        retriever: str = DEFAULT_RETRIEVER,
        filters: dict[str, Any] | None = None,
        include_content: bool = False,
    ) -> dict[str, Any]:
        """``POST /vectors/search``; returns the response object."""
        check_served(retriever)
        body: dict[str, Any] = {"query": query, "k": k, "retriever": retriever,
                                "include_content": include_content}
        if filters:
            body["filters"] = filters
        result: dict[str, Any] = self._call("POST", "/vectors/search", body)
        return result

    def search_hits(
        self, query: str, k: int = DEFAULT_SEARCH_K, *, retriever: str = DEFAULT_RETRIEVER
    ) -> list[Hit]:
        """Results as :class:`~lakevec.retrieval.base.Hit` (content included), like a local
        search with the same retriever."""
        out = self.search(query, k, retriever=retriever, include_content=True)
        return [
            Hit(
                PlaybookRecord(
                    id=r["id"], title=r["title"], content=r.get("content") or "",
                    tags=r["tags"], source_run_id=r["source_run_id"],
                    success_score=r["success_score"], source_category=r["source_category"],
                ),
                float(r["score"]),
            )
            for r in out["results"]
        ]

    def replay(
        self,
        request: ReplayRequest,
        *,
        retriever: str = DEFAULT_RETRIEVER,
        timeout: float | None = None,
    ) -> ReplayResult:
        """``POST /replay``; the service logs the evidence row and returns the result."""
        check_served(retriever)
        body = {**request.model_dump(), "retriever": retriever}
        data = self._call("POST", "/replay", body, timeout=timeout)
        return ReplayResult.model_validate(data)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def healthz(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json()["error"]
        return str(err["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200] or resp.reason_phrase


def reject_local_options(ctx: click.Context, names: Iterable[str]) -> None:
    """With ``--server`` the service's own index, model and gateway apply: refuse overrides."""
    given = [
        "--" + name.removesuffix("_path").removesuffix("_url").replace("_", "-")
        for name in names
        # Environment defaults (e.g. $LH_GATEWAY_URL) are not a request to override.
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise UsageProblem(
            f"{', '.join(given)} cannot be combined with --server: the service uses its own "
            "configuration (set it on `lakevec serve`)"
        )
