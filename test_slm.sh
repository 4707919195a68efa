#!/bin/sh
# test_slm.sh - run SLM's whole test suite in its own virtual environment.
#
#   ./test_slm.sh                 everything (extra words go to pytest: -k NAME, -x, tests/test_run.py)
#   ./test_slm.sh --setup         only make .venv (bench/run.sh does this first)
#   SLM_TEST_PYTHONS="/usr/bin/python3.6 ..." ./test_slm.sh    choose the interpreters slm.py is tested under
#
# Creates .venv (Python 3.9+, for the service and pytest) on first use and
# whenever tests/requirements.txt changes.  Suites needing Slurm or MariaDB skip
# with a message when those are absent; SLM_REQUIRE_SLURM=1 / SLM_REQUIRE_MARIADB=1
# (set by .ci/run) make them fail instead.  The last line is "N passed, N failed, N skipped".
set -eu
cd "$(dirname "$0")"

pick_python() {
  for p in "${SLM_VENV_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
    [ -n "$p" ] || continue
    command -v "$p" >/dev/null 2>&1 || continue
    if "$p" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      # the real interpreter, not a shell shim (pyenv's costs ~90 ms per start)
      "$p" -c 'import sys; print(sys.executable)'; return 0
    fi
  done
  echo "test_slm.sh: needs Python 3.9+ for the test environment (set SLM_VENV_PYTHON)" >&2
  exit 2
}

VENV=.venv
STAMP=$VENV/.requirements
if [ ! -x "$VENV/bin/python" ] || ! cmp -s tests/requirements.txt "$STAMP" 2>/dev/null \
   || ! cmp -s requirements.txt "$STAMP.top" 2>/dev/null; then
  PY=$(pick_python)
  echo "test_slm.sh: creating $VENV with $PY" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$STAMP"
  cp requirements.txt "$STAMP.top"
fi

# --setup: make (or refresh) .venv and stop there; bench/run.sh uses it
[ "${1:-}" != "--setup" ] || exit 0

[ $# -gt 0 ] || set -- tests
SUMMARY=$(mktemp)
trap 'rm -f "$SUMMARY"' EXIT
set +e
SLM_TEST_SUMMARY=$SUMMARY "$VENV/bin/python" -m pytest -p no:cacheprovider --timeout=600 \
  -ra "$@"
status=$?
set -e
if [ -s "$SUMMARY" ]; then
  cat "$SUMMARY"
else
  echo "0 passed, 1 failed, 0 skipped (pytest did not run: exit $status)"
  [ "$status" -ne 0 ] || status=1
fi
exit $status
