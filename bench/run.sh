#!/bin/sh
# Run every SLM benchmark and print a summary table.
#   bench/run.sh [--quick]      (--quick: fewer runs/requests, < 2 minutes)
# Works from any directory.  Scripts run under the repository's .venv python
# (it has bottle and pymysql); the interpreter timed for slm.py is its real
# path (never a pyenv shim).  Full logs go to $BENCH_LOG_DIR (default: a temp
# dir, printed at the end).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=${BENCH_HARNESS_PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
QUICK=
[ "${1:-}" = "--quick" ] && QUICK=--quick
LOG=${BENCH_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/slm-bench-logs.XXXXXX")}
mkdir -p "$LOG"
START=$(date +%s)
STATUS=0
for b in wrapper ingest burst query fairness; do
    echo ">>> $b $QUICK" >&2
    "$PY" "$HERE/$b.py" $QUICK 2>"$LOG/$b.err" | tee "$LOG/$b.out" | grep -v '^RESULT|'
    if ! grep -q '^RESULT|' "$LOG/$b.out"; then
        echo "!!! $b produced no results; stderr:" >&2; tail -n 20 "$LOG/$b.err" >&2; STATUS=1
    fi
done
END=$(date +%s)
echo
echo "## Summary ($(date -u '+%Y-%m-%d %H:%M UTC'), bench/run.sh $QUICK, $((END - START)) s)"
echo
sed -n 's/^machine: *//p' "$LOG/wrapper.out" | head -n 1 | sed 's/^/machine: /'
sed -n 's/^interpreter: *//p' "$LOG/wrapper.out" | head -n 1 | sed 's/^/interpreter: /'
echo
echo "| benchmark | result | target | verdict |"
echo "|---|---|---|---|"
cat "$LOG/wrapper.out" "$LOG/ingest.out" "$LOG/burst.out" "$LOG/query.out" "$LOG/fairness.out" 2>/dev/null |
    sed -n 's/^RESULT|\(.*\)|\(.*\)|\(.*\)|\(.*\)$/| \1 | \2 | \3 | \4 |/p'
echo
echo "logs: $LOG"
exit $STATUS
