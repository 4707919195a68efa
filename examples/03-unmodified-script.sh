#!/bin/bash
# An ordinary batch script that knows nothing about SLM.  Submit it with
#
#     python3 /shared/tools/slm.py submit -p debug 03-unmodified-script.sh input.dat
#
# instead of `sbatch ...`: every #SBATCH line below and every option on the
# command line work as with sbatch; the job runs this very file (a snapshot
# taken at submit time, like sbatch's) with bash, its arguments, in the submit
# directory, under `slm run`.  Use --no-monitor to report the submission only.
# #SLM lines choose this job's notices, as --mail-type would (sbatch ignores
# them; `slm submit` reads them, and they never reach Slurm's copy of the script).
#SBATCH --job-name=unmodified
#SBATCH --time=00:05:00
#SBATCH --output=unmodified-%j.out
#SLM --notify-on=END,FAIL
echo "processing $1 on $(hostname)"
sleep 30
echo done
