"""The CLI starts cheap: importing it, --version and --help load no heavy dependency."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import REPO

HEAVY = ("numpy", "pydantic", "httpx", "torch")
# The only lakevec modules the CLI may load before a command runs (besides its own).
LIGHT = {"lakevec", "lakevec.settings", "lakevec.paths", "lakevec.errors"}
COMMANDS = ("build-index", "search", "replay", "verify", "eval", "reindex", "status",
            "serve", "ab")

CODE = """
import json, sys
from lakevec.cli import main
codes = [main(args, standalone_mode=False) for args in ARGS]
print(json.dumps({
    "codes": codes,
    "heavy": [m for m in HEAVY if m in sys.modules],
    "lakevec": sorted(m for m in sys.modules if m == "lakevec" or m.startswith("lakevec.")),
}))
"""


def run_cli(args: list[list[str]]) -> tuple[list[Any], list[str], list[str]]:
    """Run ``main(args)`` for each args in a fresh interpreter: exit codes, heavy and
    non-CLI lakevec modules loaded."""
    code = f"ARGS = {args!r}\nHEAVY = {HEAVY!r}\n{CODE}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    others = [m for m in out["lakevec"] if m not in LIGHT and not m.startswith("lakevec.cli")]
    return out["codes"], out["heavy"], others


def test_version_and_help_import_nothing_heavy() -> None:
    codes, heavy, others = run_cli([["--version"], ["--help"], ["replay", "--help"]])
    assert codes == [0, 0, 0]
    assert heavy == []
    assert others == []


def test_every_command_help_imports_nothing_heavy() -> None:
    codes, heavy, others = run_cli([[name, "--help"] for name in COMMANDS])
    assert codes == [0] * len(COMMANDS)
    assert heavy == []
    assert others == []
