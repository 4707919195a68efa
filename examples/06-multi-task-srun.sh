#!/bin/bash
# A multi-task step: slm wraps the whole srun, so the job reports once, and
# scancel / the time limit reach srun, which passes them to every task.
#SBATCH --job-name=mpi
#SBATCH --ntasks=4
#SBATCH --time=00:20:00
exec python3 /shared/tools/slm.py run -- srun ./mpi_solver input.dat
#
# Wrapping each task instead (`srun python3 slm.py run -- ./mpi_solver`) also
# works: only task 0 (SLURM_PROCID=0) reports; the others run unmonitored.
