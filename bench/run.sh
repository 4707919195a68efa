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
# the benchmarks need what the tests need (bottle, pymysql, gunicorn): the same .venv,
# made here as ./test_slm.sh makes it when a fresh clone has none yet
if [ -z "${BENCH_HARNESS_PYTHON:-}" ]; then
    "$REPO/test_slm.sh" --setup >&2 || { echo "bench/run.sh: cannot make .venv" >&2; exit 2; }
fi
PY=${BENCH_HARNESS_PYTHON:-$REPO/.venv/bin/python}
QUICK=
[ "${1:-}" = "--quick" ] && QUICK=--quick
LOG=${BENCH_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/slm-bench-logs.XXXXXX")}
mkdir -p "$LOG"
START=$(date +%s)
# the machine may be shared: the load before and after says how quiet it was
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STATUS=0
for b in wrapper heartbeat site ingest burst query fairness layers servers dashboard; do
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
echo "load (1/5/15 min, $(nproc) cores): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
echo "| benchmark | result | target | verdict |"
echo "|---|---|---|---|"
for b in wrapper heartbeat site ingest burst query fairness layers servers dashboard; do cat "$LOG/$b.out"; done 2>/dev/null |
    sed -n 's/^RESULT|\(.*\)|\(.*\)|\(.*\)|\(.*\)$/| \1 | \2 | \3 | \4 |/p'
echo
echo "logs: $LOG"
exit $STATUS
