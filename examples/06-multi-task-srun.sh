#!/bin/bash
# A multi-task step: slm wraps the whole srun, so the job reports once, and
# scancel / the time limit reach srun, which passes them to every task.
#SBATCH --job-name=mpi
#SBATCH --ntasks=4
#SBATCH --time=00:20:00
exec python3 /shared/tools/slm.py run -- srun ./mpi_solver input.dat
#
# slm wrapping the batch script reports the whole job's CPU time and memory,
# all nodes' (from Slurm's accounting of the srun steps, at the job's end).
# Wrapping each task instead (`srun python3 slm.py run -- ./mpi_solver`) also
# works: task 0 (SLURM_PROCID=0) speaks for the job; with a service
# (SLM_API_URL) every task reports its own end, and the job ends when the last
# has, FAILED with the highest exit code if any task failed (srun's rule).
