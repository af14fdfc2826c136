#!/usr/bin/env bash
# Everything CI checks, in order: lint (ruff), format (ruff format), types (mypy), then the whole
# test suite, the 15 slowest tests listed at the end. Further arguments go to pytest, e.g.
# `bash scripts/check.sh tests/test_replay.py`.
#
# --fast: the edit-test loop (a couple of minutes on 2 cores): lint, format, types, and the tests
# that are neither end-to-end training runs (`e2e`) nor on the local SLURM cluster (`slurm`);
# one short real training run (tests/test_trainer.py's smoke run) is among them.
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--fast" ]; then
    shift
    select=(-m "not e2e and not slurm")
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "${select[@]}" "$@"
