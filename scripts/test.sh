#!/usr/bin/env bash
# README command 2: install lakevec with its test dependencies, lint, type-check
# and run the whole test suite (unit, CLI, and real-model integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export HF_HUB_OFFLINE=1
.venv/bin/ruff check lakevec tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
