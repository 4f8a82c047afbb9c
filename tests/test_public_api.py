"""Every name lakevec re-exports resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import lakevec


def test_every_export_resolves() -> None:
    for name in lakevec.__all__:
        assert getattr(lakevec, name) is not None, name


def test_import_is_lazy() -> None:
    code = "import sys, lakevec; print('torch' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
