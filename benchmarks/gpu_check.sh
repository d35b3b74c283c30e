#!/usr/bin/env bash
# The GPU check in one command, on a machine that lacks the config and exporter packages:
# installs the wheels carried in ${GPU_CHECK_DIR}/wheels (made by `pip download`, see
# `python -m benchmarks.gpu_check --help`) without touching anything else, then runs the
# check on ${GPU_CHECK_DIR}/avatars. Extra arguments go to benchmarks.gpu_check.
#
#   bash benchmarks/gpu_check.sh [--out runs/gpu_check] [--no-compile] ...
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_CHECK_DIR=${GPU_CHECK_DIR:-data/gpu_check}
PYTHON=${PYTHON:-python}
if compgen -G "$GPU_CHECK_DIR/wheels/*.whl" > /dev/null; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps "$GPU_CHECK_DIR"/wheels/*.whl
fi
exec "$PYTHON" -m benchmarks.gpu_check --data "$GPU_CHECK_DIR/avatars" "$@"
