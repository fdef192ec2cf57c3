#!/bin/bash
# One training run across several nodes: one `deepfake-nb train` per node, trained together with TensorFlow's
# MultiWorkerMirroredStrategy. TF_CONFIG is set for each task from Slurm's variables (the nodes of the job, this task's rank);
# task 0 is the chief and alone writes reports/runs/<dataset>/<run_id>/. The global batch is --batch-size x nodes (x GPUs per node).
#
#   sbatch --nodes=4 examples/slurm_train.sh --dataset celebdf --backbone resnet50 --mode finetune --worker-timeout 300
#
# Preprocess first (examples/slurm_preprocess.sh, with --features for frozen mode); every node must see the same DEEPFAKE_NB_HOME.
# A node that dies stops the others after --worker-timeout seconds with an error naming it: resubmit with --resume to go on from
# the last epoch checkpoint. The options are those of `deepfake-nb train --help`.
# Dry run (prints each task's TF_CONFIG and command instead of running them):
#   DRY_RUN=1 SLURM_JOB_NODELIST='gpu[01-02]' SLURM_NNODES=2 bash examples/slurm_train.sh --dataset demo
#SBATCH --job-name=deepfake-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --mem=32G
#SBATCH --time=08:00:00
#SBATCH --output=deepfake-train-%j.log
set -euo pipefail

export DEEPFAKE_NB=${DEEPFAKE_NB:-deepfake-nb}     # or the full path of .venv/bin/deepfake-nb
export DEEPFAKE_NB_HOME=${DEEPFAKE_NB_HOME:-$PWD}
export PORT=${PORT:-23456}                          # the port each worker listens on (free on every node)
(( $# )) || set -- --dataset demo

hostnames() {   # the host names of a Slurm node list such as gpu[01-03,07],cpu5
    if command -v scontrol >/dev/null && [[ -z "${DRY_RUN:-}" ]]; then scontrol show hostnames "$1"; return; fi
    python3 - "$1" <<'PY'
import re, sys
for part in re.findall(r'[^,\[]+(?:\[[^\]]*\])?', sys.argv[1]):
    m = re.fullmatch(r'(.*)\[(.*)\]', part)
    if not m: print(part); continue
    for r in m.group(2).split(','):
        a, _, b = r.partition('-')
        for i in range(int(a), int(b or a) + 1): print(f'{m.group(1)}{i:0{len(a)}d}')
PY
}

task() {   # one worker: this task's TF_CONFIG, then deepfake-nb train
    local hosts workers i
    mapfile -t hosts < <(hostnames "${SLURM_JOB_NODELIST:?}")
    (( ${#hosts[@]} >= 2 )) || { echo "slurm_train.sh: ${#hosts[@]} node(s); multi-worker training needs --nodes=2 or more" >&2; exit 2; }
    workers=$(printf '"%s:'"$PORT"'",' "${hosts[@]}")
    i=${SLURM_PROCID:?}
    for j in "${!hosts[@]}"; do [[ "${hosts[$j]}" == "${SLURMD_NODENAME:-}" ]] && i=$j; done   # this node's place in the list
    local tf_config="{\"cluster\": {\"worker\": [${workers%,}]}, \"task\": {\"type\": \"worker\", \"index\": $i}}"
    local cmd=("$DEEPFAKE_NB" train "$@")
    if [[ -n "${DRY_RUN:-}" ]]; then printf 'TF_CONFIG=%s\n+' "$tf_config"; printf ' %q' "${cmd[@]}"; printf '\n'; return; fi
    TF_CONFIG=$tf_config exec "${cmd[@]}"
}

if [[ -n "${DRY_RUN:-}" ]]; then     # what each of the job's tasks would run
    for (( p = 0; p < ${SLURM_NNODES:?"set SLURM_NNODES for a dry run"}; p++ )); do SLURM_PROCID=$p task "$@"; done
    exit 0
fi
srun --ntasks="${SLURM_NNODES:?run it with sbatch}" --ntasks-per-node=1 bash -c "$(declare -f hostnames task); task \"\$@\"" task "$@"
