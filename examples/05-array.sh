#!/bin/bash
# An array job: each task reports under its own id, ARRAYID_TASKID (e.g. 4242_3),
# with array_job_id and array_task_id in every event.
#
#     python3 /shared/tools/slm.py submit 05-array.sh        (the --array line is honoured)
#
#SBATCH --job-name=sweep
#SBATCH --array=1-10%4
#SBATCH --time=00:30:00
#SBATCH --output=sweep-%A_%a.out
python3 sweep.py --point "$SLURM_ARRAY_TASK_ID"
