#!/usr/bin/env bash
# Train the cgan_avatars preset: conditional DCGAN on the embedded avatars.
#
#   mkdir -p logs
#   sbatch slurm/train_cgan.sh [key=value ...]
#   sbatch --nodes=2 --gpus-per-node=4 slurm/train_cgan.sh steps=100000
#
# A thin wrapper: settings, preemption and resuming are described in
# slurm/train.sh. The #SBATCH defaults must sit in the submitted file, so they
# repeat slurm/train.sh's, except the job name, which also names the run
# folder (runs/cgan_avatars). tests/test_slurm.py checks that they agree.
#
#SBATCH --job-name=cgan_avatars
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120

# Slurm runs a copy of this file, so find train.sh in the checkout, not next to $0.
export PRESET=${PRESET:-cgan_avatars}
exec "${TAGFACE_DIR:-${SLURM_SUBMIT_DIR:-.}}/slurm/train.sh" "$@"
