"""Request and response models of the service (the OpenAPI document is built from these).

Request fields accept only their documented JSON types (strict: ``"8"`` or
``true`` is not an integer, ``0`` is not a boolean); unknown fields, NaN and
infinities are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from lakevec.retrieval.filters import SearchFilters as RetrievalFilters
from lakevec.service.settings import (
    MAX_FILTER_VALUE_CHARS,
    MAX_FILTER_VALUES,
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_SERVED_TASK_CHARS,
)
from lakevec.settings import (
    DEFAULT_RETRIEVER,
    DEFAULT_SEARCH_K,
    INDEX_RETRIEVERS,
    MAX_TEMPERATURE,
    MAX_TOKENS,
    TEMPERATURE,
)

FilterValue = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=MAX_FILTER_VALUE_CHARS)
]
FilterList = Annotated[list[FilterValue], Field(min_length=1, max_length=MAX_FILTER_VALUES)]

def _json_integer(value: object) -> object:
    # JSON Schema's "integer" is any number without a fraction, so 8.0 is one;
    # "8" and true are not (the strict check after this rejects them).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema defines it: ``8`` or ``8.0``, never ``"8"`` or ``true``.
JsonInt = Annotated[StrictInt, BeforeValidator(_json_integer)]
RETRIEVER_DOC = (
    f"how to rank: {', '.join(INDEX_RETRIEVERS)} (default {DEFAULT_RETRIEVER}, the same as "
    "`lakevec search` and `lakevec replay`)"
)


#: Matches one character ``str.strip()`` keeps: Python's whitespace spelled out,
#: so the published schema, pydantic's regex engine and the blank check below
#: agree on every character (``\S`` differs between them: U+001C-U+001F, U+0085,
#: U+FEFF).
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _utf8_text(value: str, what: str) -> str:
    # JSON "\ud800" decodes to a lone surrogate, which no tokenizer (and no
    # UTF-8 log) accepts: reject it as a client error rather than fail later.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from None
    if not value.strip():
        raise ValueError(f"{what} is blank")
    return value


def _served_retriever(value: str) -> str:
    if value not in INDEX_RETRIEVERS:
        choices = ", ".join(INDEX_RETRIEVERS)
        raise ValueError(f"unknown retriever {value!r}; choose one of {choices}")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class SearchFilters(_Body):
    """Every given filter must hold (AND); a list matches any of its values (OR)."""

    success_score: FilterList | None = Field(None, description="record's success_score is one of")
    tags_any: FilterList | None = Field(None, description="record has at least one of these tags")
    source_category: FilterList | None = Field(None, description="record's category is one of")
    min_score: StrictFloat | None = Field(
        None, ge=-1.0,
        description="drop hits whose score (the retriever's own, see SearchHit.score) is "
        "below it: cosine (-1..1) for hnsw and exact, RRF (0..1) for hybrid, BM25 (≥ 0)",
    )

    def to_filters(self) -> RetrievalFilters:
        """The library's filters (:class:`lakevec.retrieval.filters.SearchFilters`)."""
        def values(v: list[str] | None) -> tuple[str, ...] | None:
            return tuple(v) if v is not None else None

        return RetrievalFilters(
            success_score=values(self.success_score), tags_any=values(self.tags_any),
            source_category=values(self.source_category), min_score=self.min_score,
        )


class SearchRequest(_Body):
    # The schema says what the validator enforces: exact: true goes with no
    # retriever or with retriever exact.
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["exact", "retriever"],
        "properties": {
            "exact": {"const": True},
            "retriever": {"enum": [r for r in INDEX_RETRIEVERS if r != "exact"]},
        },
    }})

    query: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK)
    k: JsonInt = Field(
        DEFAULT_SEARCH_K, ge=1, le=MAX_K,
        description=f"results wanted (1..{MAX_K}); fewer when the index is smaller",
    )
    filters: SearchFilters | None = None
    retriever: StrictStr = Field(
        DEFAULT_RETRIEVER, description=RETRIEVER_DOC,
        json_schema_extra={"enum": list(INDEX_RETRIEVERS)},
    )
    exact: StrictBool = Field(
        False, description="compatibility synonym of retriever=exact (brute-force cosine)"
    )
    include_content: StrictBool = Field(False, description="return each record's full content")

    @field_validator("query")
    @classmethod
    def _query_text(cls, value: str) -> str:
        return _utf8_text(value, "query")

    @field_validator("retriever")
    @classmethod
    def _retriever_name(cls, value: str) -> str:
        return _served_retriever(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.exact and "retriever" in self.model_fields_set and self.retriever != "exact":
            raise ValueError(
                f"exact: true means retriever exact; it cannot be combined with retriever "
                f"{self.retriever!r} (drop one of them)"
            )
        return self

    @property
    def kind(self) -> str:
        """The retriever to rank with (``exact: true`` selects ``exact``)."""
        return "exact" if self.exact else self.retriever


class SearchHit(BaseModel):
    rank: int
    id: str
    score: float = Field(
        description="the retriever's own score, higher is better: cosine similarity for hnsw "
        "and exact, the reciprocal-rank-fusion score for hybrid, the BM25 score for bm25"
    )
    title: str
    success_score: str
    source_category: str
    source_run_id: str
    tags: list[str]
    content: str | None = None


class SearchResponse(BaseModel):
    results: list[SearchHit]
    k: int
    retriever: str = Field(description="the retriever that ranked the results")
    strategy: str = Field(
        description="how the search ran: hnsw, exact, hybrid, bm25, or for filtered searches "
        "exact-filtered, hnsw-overfetch, exact-fallback, hybrid-filtered, bm25-filtered"
    )
    index_version: int
    snapshot: str
    model: str
    took_ms: float


class ReplayBody(_Body):
    """A replay request: the CLI's ``lakevec replay`` flags as JSON."""

    task: StrictStr = Field(min_length=1, max_length=MAX_SERVED_TASK_CHARS, pattern=NOT_BLANK)
    local_only: StrictBool = False
    allow_escalation: StrictBool = False
    no_retrieval: StrictBool = False
    dry_run: StrictBool = False
    max_tokens: JsonInt = Field(
        MAX_TOKENS, ge=1, description="max_tokens sent with each model call (the seed's 1500)"
    )
    temperature: float = Field(
        TEMPERATURE, ge=0, le=MAX_TEMPERATURE,
        description="sampling temperature sent with each model call (the seed's 0.1)",
    )
    retriever: StrictStr = Field(
        DEFAULT_RETRIEVER, description=RETRIEVER_DOC,
        json_schema_extra={"enum": list(INDEX_RETRIEVERS)},
    )

    @field_validator("task")
    @classmethod
    def _task_text(cls, value: str) -> str:
        return _utf8_text(value, "task")

    @field_validator("retriever")
    @classmethod
    def _retriever_name(cls, value: str) -> str:
        return _served_retriever(value)


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"]
    index_version: int


class EndpointStats(BaseModel):
    requests: int
    status_2xx: int
    status_4xx: int
    status_5xx: int
    p50_ms: float | None
    p99_ms: float | None
    window: int = Field(description="latency samples the percentiles are computed over")


class IndexStats(BaseModel):
    dir: str
    snapshot: str
    version: int
    records: int
    built_at: str
    loaded_at: str
    swaps: int
    reload_failures: int
    last_reload_error: str | None


class ModelStats(BaseModel):
    spec: str
    model_id: str
    dimension: int
    backend: str
    precision: str


class Stats(BaseModel):
    lakevec_version: str
    uptime_s: float
    index: IndexStats
    model: ModelStats
    in_flight: int
    endpoints: dict[str, EndpointStats]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in (
        (400, "malformed request"),
        (401, "missing or wrong bearer token"),
        (413, "request body too large"),
        (415, "body is not application/json"),
        (422, "request body fails validation"),
        (500, "server failure (e.g. evidence log not writable)"),
        (503, "index unavailable"),
    )
}

