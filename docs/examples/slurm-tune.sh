#!/bin/bash
# One Optuna study, one worker per array task (one GPU each); every task runs the same command.
# Submit with: sbatch docs/examples/slurm-tune.sh
#SBATCH --job-name=mlperf-tune
#SBATCH --array=0-15
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=tune-%A-%a.log
set -euo pipefail

# The storage URL comes from a file only this user can read, so the password is in no command line.
export MLPERF_TRACK_STORAGE="$(cat "$HOME/.mlperf_track_storage")"
export MLFLOW_TRACKING_URI=http://mlflow.example.org:5000
# Slurm sets CUDA_VISIBLE_DEVICES to the GPU it gave this task.
exec mlperf-track tune --model resnet50 --device cuda --study-name "rn50-${SLURM_ARRAY_JOB_ID}" --n-trials 400 \
    --output-dir "tune-output/${SLURM_ARRAY_TASK_ID}"
