#!/bin/bash
# An existing script you keep: change only its last line to `exec ... slm run -- ...`.
# Set-up lines run first as usual; the long-running step is monitored.
# (Without `exec`, bash stays the batch process: on cgroup clusters Slurm's
# signals would reach bash only, and slm prints a warning saying so.)
#SBATCH --job-name=exec-line
#SBATCH --time=02:00:00
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
cd "$SLURM_SUBMIT_DIR"
mkdir -p checkpoints
exec python3 /shared/tools/slm.py run -- ./simulate --config run.yaml --checkpoint-dir checkpoints
