"""The ``lakevec`` command line: thin wrappers over the library.

Each command parses options, makes one library call and maps domain errors:
:class:`~lakevec.errors.UsageProblem` → exit 2, any other
:class:`~lakevec.errors.LakevecError` → exit 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lakevec import __version__
from lakevec.errors import LakevecError, UsageProblem
from lakevec.paths import resolve_root

F = TypeVar("F", bound=Callable[..., Any])


def domain_errors(func: F) -> F:
    """Turn lakevec errors into click errors with the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageProblem as exc:
            raise click.UsageError(str(exc)) from exc
        except LakevecError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, sort_keys=False))


def root_from(ctx: click.Context) -> Path:
    root: Path = ctx.obj["root"]
    return root


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lakevec")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project root holding exports/rag/playbooks.jsonl, index/ and data/_kb/. "
    "Default: $LH_DISTILL_ROOT, else the current directory.",
)
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """lakevec: local ANN retrieval for LLM replay pipelines.

    Build an HNSW index of the playbook corpus with `lakevec build-index`,
    query it with `lakevec search`, and run the replay pipeline with
    `lakevec replay --task "..."`.
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = resolve_root(root)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
