#!/usr/bin/env bash
# Create ./.venv and install lakevec into it (idempotent; fast when up to date).
# Usage: bash scripts/setup.sh [extras]   e.g. `bash scripts/setup.sh test,ray,local`
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extra="${1:-}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() {
  # Hide only pip's notes about unreachable find-links/index locations that
  # some machines configure globally; real errors still reach stderr.
  .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
# torch first and pinned: 2.13.0 is a local CPU wheel here; any other request
# would pull gigabytes of CUDA packages.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  pip install torch==2.13.0
fi
# The `local` extra compiles llama-cpp-python (C++) on first install: use
# every core for it; pip caches the built wheel for later installs.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
case ",$extra," in
  *,local,*)
    if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
      echo "setup: installing llama-cpp-python for --api local; without a cached wheel it" \
        "compiles from source (~5-6 min on 2 cores, once)" >&2
    fi ;;
esac
pip install -e ".${extra:+[$extra]}"
# An editable install is not byte-compiled, and some environments set
# PYTHONDONTWRITEBYTECODE: compile lakevec once so no cold command recompiles it.
.venv/bin/python -m compileall -q lakevec >/dev/null
