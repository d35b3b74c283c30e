#!/usr/bin/env bash
# Train a tagface preset on a Slurm cluster, on one node or many.
#
#   mkdir -p logs                                  # Slurm does not create it
#   sbatch slurm/train.sh cgan_avatars [key=value ...]
#   PRESET=stargan_avatars sbatch --nodes=2 slurm/train.sh steps=200000
#   sbatch --gpus-per-node=0 --cpus-per-task=16 slurm/train.sh my.yaml   # CPU nodes
#
# One Slurm task per node; each task runs `accelerate launch`, which starts
# one training process per GPU of its node (or PROCS_PER_NODE processes on
# nodes without GPUs) and joins the others through a c10d rendezvous on the
# first node.
#
# Resources: the #SBATCH lines below are defaults. Override them on the
# command line (sbatch -p gpu -A myproj --nodes=4 --gpus-per-node=8 ...) or
# with SBATCH_* variables (SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT).
# Everything else is a ${VAR:-default} under "Settings" below.
#
# Preemption and time limits: Slurm sends USR1 to this shell 120 s before the
# time limit (--signal=B:USR1@120); `scancel --batch --signal=USR1 JOB` does
# the same by hand. The shell passes the signal to every training process,
# each finishes its step and saves a checkpoint, and the shell requeues the
# job. The next start resumes the same run folder (--resume auto), which is
# named after the job, not the job id. TERM (scancel, preemption) also makes
# the trainer checkpoint, but does not requeue: Slurm decides whether a
# cancelled or preempted job comes back. Details: docs/slurm.md.
#
#SBATCH --job-name=tagface
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120

set -euo pipefail

say() { echo "[train.sh $(date +%H:%M:%S)] $*"; }
die() { say "error: $*" >&2; exit 2; }

[[ -n ${SLURM_JOB_ID:-} ]] || die "submit me with sbatch (see the top of this file)"

# ---- Settings ------------------------------------------------------------------------
# The first argument is the preset (or a YAML file) unless it is a key=value override.
if [[ $# -gt 0 && $1 != *=* ]]; then
    PRESET=$1
    shift
fi
PRESET=${PRESET:-}                # preset name (trainer/configs/NAME.yaml) or YAML path
overrides=("$@")                  # key=value config overrides, e.g. steps=50000 batch_size=32
TAGFACE_DIR=${TAGFACE_DIR:-$SLURM_SUBMIT_DIR}   # the checkout; the job runs from here
RUN_DIR=${RUN_DIR:-runs/$SLURM_JOB_NAME}        # stable across requeues (job name, not id)
VENV=${VENV:-}                    # virtualenv to activate (default: $TAGFACE_DIR/.venv if any)
MODULES=${MODULES:-}              # environment modules to load, e.g. "cuda/12.4 nccl"
SETUP=${SETUP:-}                  # shell code run before training, e.g. "conda activate gan"
PROCS_PER_NODE=${PROCS_PER_NODE:-1}             # training processes per node without GPUs
MAIN_PORT=${MAIN_PORT:-$((20000 + SLURM_JOB_ID % 20000))}  # rendezvous port on the first node
MIXED_PRECISION=${MIXED_PRECISION:-auto}        # auto (the trainer decides per machine) | no | fp16 | bf16
ACCELERATE_ARGS=${ACCELERATE_ARGS:-}            # extra `accelerate launch` flags (word-split)
MAX_RESTARTS=${MAX_RESTARTS:-50}                # stop requeueing after this many restarts
# NCCL_SOCKET_IFNAME, NCCL_DEBUG, TAGFACE_CACHE, ... are passed through unchanged.

[[ -n $PRESET ]] || die "no preset: sbatch slurm/train.sh PRESET [key=value ...] (or PRESET=...)"
cd "$TAGFACE_DIR"

# ---- Environment hooks ---------------------------------------------------------------
set +u  # module, activate and conda scripts often read unset variables
if [[ -n $MODULES ]]; then
    if ! command -v module >/dev/null; then
        for init in /etc/profile.d/lmod.sh /etc/profile.d/modules.sh; do
            # shellcheck disable=SC1090
            [[ -f $init ]] && source "$init" && break
        done
    fi
    # shellcheck disable=SC2086  # a list of module names
    module load $MODULES
fi
if [[ -z $VENV && -f .venv/bin/activate ]]; then
    VENV=.venv
fi
if [[ -n $VENV ]]; then
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
fi
if [[ -n $SETUP ]]; then
    eval "$SETUP"
fi
set -u
command -v accelerate >/dev/null || die "accelerate not found; set VENV, MODULES or SETUP"

# ---- Topology ------------------------------------------------------------------------
nodes=$SLURM_JOB_NUM_NODES
mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node=${hosts[0]}
# Rendezvous address: the head node's NodeAddr (its name may not resolve, e.g. when
# several slurmd share a machine); MAIN_ADDR overrides.
head_addr=$(scontrol show node "$head_node" --oneliner | grep -o 'NodeAddr=[^ ]*' || true)
head_addr=${head_addr#NodeAddr=}
MAIN_ADDR=${MAIN_ADDR:-${head_addr:-$head_node}}

# GPUs per node: Slurm's allocation (--gpus-per-node or --gres), which may carry a type
# ("a100:4"); GPUS_PER_NODE overrides. Without GPUs, train on CPU with PROCS_PER_NODE
# processes per node. ACCELERATE_USE_CPU=1 together with --multi_gpu below is what makes
# CPU training really multi-process (gloo); `--cpu` alone would silently run ONE process.
gpus=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}}
gpus=${gpus##*:}
if ((gpus > 0)); then
    procs_per_node=$gpus
    device="$gpus GPU(s)"
else
    procs_per_node=$PROCS_PER_NODE
    export ACCELERATE_USE_CPU=1
    device="CPU"
fi
num_processes=$((nodes * procs_per_node))
cpus_per_task=${SLURM_CPUS_PER_TASK:-1}
threads=$((cpus_per_task / procs_per_node > 0 ? cpus_per_task / procs_per_node : 1))

launch=(--num_processes "$num_processes" --num_machines "$nodes"
        --num_cpu_threads_per_process "$threads" --dynamo_backend no)
if [[ $MIXED_PRECISION == auto ]]; then
    # The launcher's flag wins in the trainer, and its default is "no": decide here, on the
    # head node's hardware, as the trainer's auto would (the reason goes to the log).
    py=$(command -v python || command -v python3) || die "no python on PATH"
    MIXED_PRECISION=$("$py" -m trainer.precision) || die "python -m trainer.precision failed"
fi
launch+=(--mixed_precision "$MIXED_PRECISION")
if ((num_processes > 1)); then
    launch+=(--multi_gpu --main_process_ip "$MAIN_ADDR" --main_process_port "$MAIN_PORT")
fi
if ((nodes > 1)); then
    # c10d rendezvous on the head node. (On one node the launcher's static rendezvous
    # on MAIN_PORT is used: c10d there would take torch's fixed default port 29400.)
    launch+=(--rdzv_backend c10d)
fi
# shellcheck disable=SC2206  # flags, split on purpose
launch+=($ACCELERATE_ARGS)
launch+=(-m trainer.train --config "$PRESET" --run-dir "$RUN_DIR" --resume auto)
launch+=("${overrides[@]}")

mkdir -p "$RUN_DIR"
marker=$RUN_DIR/preempted      # the trainer writes it (with the step) after a signal
rm -f "$marker"

say "job $SLURM_JOB_ID ($SLURM_JOB_NAME), restart ${SLURM_RESTART_COUNT:-0}," \
    "nodes $SLURM_JOB_NODELIST, head $head_node ($MAIN_ADDR:$MAIN_PORT)"
say "$nodes node(s) x $procs_per_node process(es) on $device = $num_processes," \
    "$threads thread(s) each"
say "preset $PRESET, run $RUN_DIR, overrides: ${overrides[*]:-none}"

# ---- Signals -------------------------------------------------------------------------
# USR1 (time limit near, or by hand) reaches only this shell; TERM may too. Pass USR1 on
# to the job step, i.e. to every process of every task, so that each rank checkpoints.
# The launcher in each task ignores USR1 (see below).
signal_received=""
# shellcheck disable=SC2317  # called by the traps below
on_signal() {
    signal_received=$1
    say "got $1: asking every rank to checkpoint and stop"
    scancel --signal=USR1 "$SLURM_JOB_ID" 2>/dev/null || true  # fails if already ending
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM

# ---- Launch --------------------------------------------------------------------------
# One task per node; SLURM_NODEID (0 on the head node) expands inside each task, hence
# the single quotes. The head node hosts the c10d rendezvous store (is_host=1), so that
# no other node can take its port first when several share a machine. Each task ignores
# USR1 before exec'ing the launcher: an ignored signal stays ignored across exec, so
# USR1 cannot kill the launcher, while the trainer processes install their own USR1 and
# TERM handlers and checkpoint.
# shellcheck disable=SC2016
srun --nodes="$nodes" --ntasks-per-node=1 --cpus-per-task="$cpus_per_task" \
    --kill-on-bad-exit=1 \
    bash -c 'trap "" USR1
             echo "[train.sh] node $SLURMD_NODENAME: machine_rank $SLURM_NODEID"
             exec accelerate launch --machine_rank "$SLURM_NODEID" \
                 --rdzv_conf "is_host=$((SLURM_NODEID == 0))" "$@"' \
    launcher "${launch[@]}" &
step_pid=$!

# `wait` returns early when a trapped signal arrives; keep waiting until srun is done.
status=0
while kill -0 "$step_pid" 2>/dev/null; do
    wait "$step_pid" || true
done
wait "$step_pid" || status=$?

# ---- Requeue or finish ---------------------------------------------------------------
latest=$(cat "$RUN_DIR/checkpoints/latest" 2>/dev/null || echo none)
if [[ -f $marker ]]; then
    say "training stopped at step $(cat "$marker") with checkpoint $latest (exit $status)"
fi
# Requeue when the trainer stopped for a signal, unless this shell got TERM: then Slurm
# itself is ending the job (scancel, or preemption, after which Slurm requeues it if
# configured to). After USR1 a failed step is requeued too: it resumes from the last
# checkpoint.
requeue=false
if [[ $signal_received != TERM ]]; then
    if [[ -f $marker ]] || [[ $signal_received == USR1 && $status != 0 ]]; then
        requeue=true
    fi
fi
if [[ $requeue == true ]]; then
    if ((${SLURM_RESTART_COUNT:-0} >= MAX_RESTARTS)); then
        die "not requeueing: already restarted ${SLURM_RESTART_COUNT} times (MAX_RESTARTS)"
    fi
    say "requeueing job $SLURM_JOB_ID; it resumes from $latest"
    trap - USR1 TERM
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
fi
say "finished with exit code $status, latest checkpoint $latest"
exit "$status"
