"""``lakevec`` and ``python -m lakevec``: the command line, with a fast ``--version``.

``lakevec --version`` answers before click is imported: click and the command
modules cost more to import than the rest of the process (docs/BENCHMARKS.md,
cold start). Everything else goes to :data:`lakevec.cli.main`, unchanged.
"""

from __future__ import annotations

import sys

from lakevec import __version__


def main() -> None:
    """The ``lakevec`` console script."""
    if sys.argv[1:] == ["--version"]:
        print(f"lakevec, version {__version__}")  # click's version_option format
        return
    from lakevec.cli import main as cli

    cli(prog_name="lakevec")


if __name__ == "__main__":
    main()
