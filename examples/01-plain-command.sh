#!/bin/bash
# A plain command, monitored.  The `exec` matters: slm then *is* the batch
# process, the one Slurm signals on cgroup clusters (scancel, time limit,
# suspend), and it hands each signal on to your command.
#SBATCH --job-name=plain
#SBATCH --time=00:10:00
#SBATCH --output=plain-%j.out
exec python3 /shared/tools/slm.py run -- python3 train.py --epochs 10
