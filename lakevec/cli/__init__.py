"""The ``lakevec`` command line: thin wrappers over the library.

Each command parses options, makes one library call and maps domain errors:
:class:`~lakevec.errors.UsageProblem` → exit 2, any other
:class:`~lakevec.errors.LakevecError` → exit 1.

Start-up stays cheap: importing this package (and ``--version``/``--help``)
loads click, :mod:`lakevec.settings`, :mod:`lakevec.paths` and
:mod:`lakevec.errors` only; each command imports the library it calls.
"""

from __future__ import annotations

from pathlib import Path

import click

from lakevec import __version__, settings
from lakevec.cli.ab_cmd import ab_cmd
from lakevec.cli.eval_cmd import eval_cmd
from lakevec.cli.index_cmds import build_index_cmd, reindex_cmd, status_cmd
from lakevec.cli.loop_cmds import loop_cmd, promote_cmd
from lakevec.cli.replay_cmd import replay_cmd
from lakevec.cli.report_cmd import report_cmd
from lakevec.cli.search_cmd import search_cmd
from lakevec.cli.serve_cmd import serve_cmd
from lakevec.cli.verify_cmd import verify_cmd
from lakevec.paths import resolve_root

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lakevec")
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Project root holding exports/rag/playbooks.jsonl, index/ and data/_kb/. "
    f"Default: ${settings.ROOT_ENV}, else the current directory.",
)
@click.pass_context
def main(ctx: click.Context, root: Path | None) -> None:
    """lakevec: local ANN retrieval for LLM replay pipelines.

    Build an index of the playbook corpus with `lakevec build-index`, query it
    with `lakevec search`, and run the replay pipeline with
    `lakevec replay --task "..."`.
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = resolve_root(root)


for _command in (
    build_index_cmd, search_cmd, replay_cmd, eval_cmd, reindex_cmd, status_cmd, serve_cmd,
    report_cmd, verify_cmd, ab_cmd, promote_cmd, loop_cmd,
):
    main.add_command(_command)
