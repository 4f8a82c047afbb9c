#!/usr/bin/env bash
# README command 2: install lakevec with its test dependencies, lint, type-check
# and run the whole test suite (unit, CLI, and real-model integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,ray,local
export HF_HUB_OFFLINE=1
# The HTML report's browser test (tests/test_report_browser.py) drives Debian's
# chromium with playwright; without it that test skips. Installed only when
# missing, as root with apt, quietly; `apt-get update` only if the install fails.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "note: could not install chromium; the browser test will skip" >&2
fi
.venv/bin/ruff check lakevec tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
