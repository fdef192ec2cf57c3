#!/bin/bash
# Faces and frozen features of a dataset as a Slurm array job: array task i of n preprocesses shard i of n of the videos
# (`deepfake-nb preprocess --shard i --num-shards n`) and, with --features, extracts those videos' frozen features. The last task
# to finish merges the shards (faces' summary.csv, and each backbone's feature cache); training then finds everything cached.
#
#   sbatch --array=0-15 examples/slurm_preprocess.sh --dataset celebdf --frames 12 --size 160 --features mobilenetv2 resnet50
#   jid=$(sbatch --parsable --array=0-15 examples/slurm_preprocess.sh --dataset celebdf --features resnet50)
#   sbatch --dependency=afterok:$jid examples/slurm_train.sh --dataset celebdf --backbone resnet50
#
# Build the manifest once beforehand (deepfake-nb data --dataset celebdf --root /data/Celeb-DF-v2); every task must see the same
# DEEPFAKE_NB_HOME (a shared filesystem). The options are those of `deepfake-nb preprocess --help`; --shard, --num-shards and
# --num-workers come from Slurm. Without options: the demo, with MobileNetV2 features.
# Dry run (prints the command instead of running it):
#   DRY_RUN=1 SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_COUNT=16 bash examples/slurm_preprocess.sh --dataset celebdf
#SBATCH --job-name=deepfake-preprocess
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=deepfake-preprocess-%A_%a.log
set -euo pipefail

DEEPFAKE_NB=${DEEPFAKE_NB:-deepfake-nb}     # or the full path of .venv/bin/deepfake-nb
export DEEPFAKE_NB_HOME=${DEEPFAKE_NB_HOME:-$PWD}
task=${SLURM_ARRAY_TASK_ID:?"run it with sbatch --array=0-N (or set SLURM_ARRAY_TASK_ID for a dry run)"}
shard=$(( task - ${SLURM_ARRAY_TASK_MIN:-0} ))                        # --array=1-16 works too
num_shards=${SLURM_ARRAY_TASK_COUNT:?"run it with sbatch --array=0-N (or set SLURM_ARRAY_TASK_COUNT for a dry run)"}
(( $# )) || set -- --dataset demo --features mobilenetv2

cmd=("$DEEPFAKE_NB" preprocess --shard "$shard" --num-shards "$num_shards" --num-workers "${SLURM_CPUS_PER_TASK:-0}" "$@")
if [[ -n "${DRY_RUN:-}" ]]; then printf '+'; printf ' %q' "${cmd[@]}"; printf '\n'; exit 0; fi
exec "${cmd[@]}"
