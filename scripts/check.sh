#!/usr/bin/env bash
# Everything CI checks, in order: lint (ruff), format (ruff format), types (mypy), then the whole
# test suite. Arguments go to pytest, e.g. `bash scripts/check.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
