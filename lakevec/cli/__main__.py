"""``python -m lakevec.cli``: the same as the ``lakevec`` script."""

from __future__ import annotations

from lakevec.cli import main

main(prog_name="lakevec")
