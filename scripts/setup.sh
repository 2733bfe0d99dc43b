#!/usr/bin/env bash
# Creates .venv once and installs trainrl into it; a second call reuses it and returns quickly.
# torch is installed first, alone, so the project's torch requirement never pulls CUDA wheels:
# set TORCH_SPEC to choose another build, e.g.
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-dev}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
    .venv/bin/python -m pip install --quiet $TORCH_SPEC
fi
stamp=".venv/.trainrl-install-$(cat pyproject.toml | sha1sum | cut -c1-12)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
    rm -f .venv/.trainrl-install-*
    touch "$stamp"
fi
