#!/bin/bash
# Several steps, inline, monitored as one job: slm runs a shell that reads the
# steps from a heredoc.  Quote the tag ('STEPS') so that $VARIABLES expand in the job's
# shell, not while this script is read.
#SBATCH --job-name=pipeline
#SBATCH --time=01:00:00
exec python3 /shared/tools/slm.py run -- bash -euo pipefail -s <<'STEPS'
module load python 2>/dev/null || true
python3 prepare.py --out data/
python3 train.py --data data/ --epochs 50
python3 evaluate.py --data data/ > results.txt
STEPS
