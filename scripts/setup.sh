#!/usr/bin/env bash
# Set up dqn_atari in ./.venv from a clean clone. Safe to run again: it only installs what is missing.
# With --with-slurm it also installs Debian's SLURM daemons (root and apt), which the SLURM tests
# run as a real one-node cluster (slurm/local-cluster/); without it those tests are skipped.
#
# torch is installed first and pinned, because an open `torch` requirement makes pip fetch a
# multi-GB CUDA build. `torch==2.13.0` resolves to the CPU wheel on machines that keep one in
# their local wheel store (this project's CPU machines) and to PyPI's CUDA build on a GPU
# machine. Set TORCH_SPEC to choose another build, e.g.
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_SLURM=0
for arg in "$@"; do
    case "$arg" in
        --with-slurm) WITH_SLURM=1 ;;
        *) echo "setup.sh: unknown option $arg (known: --with-slurm)" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options on purpose
    "${PIP[@]}" install $TORCH_SPEC 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
# Editable install with the test extra; pip skips what is already satisfied.
# (The grep only hides a harmless warning about this machine's local package index.)
"${PIP[@]}" install -e ".[test]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
.venv/bin/python -c "import dqn_atari, torch; print(f'dqn_atari ready: torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
if [ "$WITH_SLURM" = 1 ]; then
    bash slurm/local-cluster/install.sh
fi
