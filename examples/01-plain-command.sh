#!/bin/bash
# A plain command, monitored.  Runs as it is, no Slurm needed:
#
#     bash examples/01-plain-command.sh
#
# (with nothing configured its events are printed on stderr; after `slm setup`
# they reach your phone), and as a batch job from the repository's folder:
#
#     sbatch examples/01-plain-command.sh
#
# The `exec` matters in a batch job: slm then *is* the batch process, the one
# Slurm signals on cgroup clusters (scancel, time limit, suspend), and it hands
# each signal on to your command.  slm.py is found beside this folder (under
# sbatch, in the submit directory: Slurm runs a copy of this script).
#SBATCH --job-name=plain
#SBATCH --time=00:10:00
#SBATCH --output=plain-%j.out
SLM_PY=${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}/slm.py
exec python3 "$SLM_PY" run --name plain -- bash -c 'for step in 1 2 3; do echo "step $step"; sleep 0.2; done'
