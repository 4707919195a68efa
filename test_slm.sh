#!/bin/sh
# test_slm.sh - run SLM's whole test suite in its own virtual environment.
#
#   ./test_slm.sh                 everything (extra words go to pytest: -k NAME, -x, tests/test_run.py)
#   ./test_slm.sh --setup         only make .venv (bench/run.sh does this first)
#   SLM_TEST_PYTHONS="/usr/bin/python3.6 ..." ./test_slm.sh    choose the interpreters slm.py is tested under
#   SLM_SLURM_RELEASES=26.05 ./test_slm.sh tests/test_transparency.py
#                                 a real-Slurm suite on Slurm 26.05 (docs/slurm-releases.md)
#
# SLM_SLURM_RELEASES (default: the host's) says on which Slurm releases the real-Slurm
# suites (the modules whose tests or fixtures take conftest's `cluster`) run: "22.05" (or "host")
# is the host's cluster (tests/slurm-cluster.sh), in this script's own pytest run with
# everything else; 24.11 and 26.05 each run in their Debian chroot
# (tests/slurm-release.sh, built on first use), with that Debian's Python and pytest,
# concurrently with the host's run (their jobs mostly wait), their output shown when
# they end.  SLM_SLURM_MODES selects the modes of every release; "REL:MODE,MODE" gives
# one release modes of its own (e.g. 26.05:linuxproc,cgroup,cgroup-signal-children).
#
# Creates .venv (Python 3.9+, for the service and pytest) on first use and
# whenever tests/requirements.txt changes.  Suites needing Slurm or MariaDB skip
# with a message when those are absent; SLM_REQUIRE_SLURM=1 / SLM_REQUIRE_MARIADB=1
# (set by .ci/run) make them fail instead.  The last line is "N passed, N failed, N skipped",
# summed over every run; a failure in any run fails the whole.
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

# --- which run gets which arguments -------------------------------------------------

quote() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# the real-Slurm suites: the modules whose tests or fixtures take conftest's `cluster`
SLURM_SUITES=$("$VENV/bin/python" - <<'EOF'
import ast, glob
for path in sorted(glob.glob("tests/test_*.py")):
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.FunctionDef) and "cluster" in [a.arg for a in node.args.args] \
                and (node.name.startswith("test") or
                     any("fixture" in ast.dump(d) for d in node.decorator_list)):
            print(path)
            break
EOF
)
HOST_SLURM=0 HOST_MODES=${SLM_SLURM_MODES:-} CHROOTS=""
for r in ${SLM_SLURM_RELEASES:-host}; do
  case ${r%%:*} in
    host|22.05) HOST_SLURM=1; [ "$r" = "${r%%:*}" ] || HOST_MODES=$(echo "${r#*:}" | tr , ' ') ;;
    *) CHROOTS="$CHROOTS $r" ;;
  esac
done

# every argument is for the host's run, but for a real-Slurm suite the host does not
# run; the chroots get the options and the real-Slurm suites among (or under) the paths
HOST_ARGS="" CHROOT_ARGS="" CHROOT_PATHS="" HOST_PATHS=0 ANY_PATH=0
for a in "$@"; do
  path=${a%%::*}
  if [ -d "$path" ]; then
    ANY_PATH=1 HOST_PATHS=1 HOST_ARGS="$HOST_ARGS$(quote "$a")"
    dir=$(cd "$path" && pwd -P)
    for f in $SLURM_SUITES; do
      case $(pwd -P)/$f in "$dir"/*)
        CHROOT_PATHS="$CHROOT_PATHS$(quote "$f")"
        [ "$HOST_SLURM" = 1 ] || HOST_ARGS="$HOST_ARGS$(quote "--ignore=$f")" ;;
      esac
    done
  elif [ -e "$path" ]; then
    ANY_PATH=1
    case " $(echo $SLURM_SUITES) " in
      *" tests/${path##*/} "*)
        CHROOT_PATHS="$CHROOT_PATHS$(quote "$a")"
        [ "$HOST_SLURM" = 0 ] || { HOST_PATHS=1 HOST_ARGS="$HOST_ARGS$(quote "$a")"; } ;;
      *) HOST_PATHS=1 HOST_ARGS="$HOST_ARGS$(quote "$a")" ;;
    esac
  else
    HOST_ARGS="$HOST_ARGS$(quote "$a")" CHROOT_ARGS="$CHROOT_ARGS$(quote "$a")"
  fi
done
if [ "$ANY_PATH" = 0 ]; then   # the whole suite
  HOST_PATHS=1 HOST_ARGS="$HOST_ARGS'tests' "
  for f in $SLURM_SUITES; do
    CHROOT_PATHS="$CHROOT_PATHS$(quote "$f")"
    [ "$HOST_SLURM" = 1 ] || HOST_ARGS="$HOST_ARGS$(quote "--ignore=$f")"
  done
fi
[ -n "$CHROOT_PATHS" ] || CHROOTS=""

# --- the runs: the chroots' in the background, the host's in the foreground -------------

RUNS=$(mktemp -d "${TMPDIR:-/tmp}/slm-test.XXXXXX")
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; rm -rf "$RUNS"' EXIT
trap 'exit 130' INT TERM
started=$(date +%s)
last=""
[ "$HOST_PATHS" = 1 ] || last=$(echo $CHROOTS | awk '{print $NF}')
n=0
for r in $CHROOTS; do
  n=$((n + 1)) rel=${r%%:*} modes=${SLM_SLURM_MODES:-}
  [ "$r" = "$rel" ] || modes=$(echo "${r#*:}" | tr , ' ')
  echo "$rel" > "$RUNS/$n.release"
  run="SLM_TEST_SUMMARY=\$RUNS/$n.summary tests/slurm-release.sh test $(quote "$rel") $(quote "$modes") $CHROOT_ARGS $CHROOT_PATHS"
  if [ "$r" = "$last" ]; then   # nothing runs in the foreground: this one does
    eval "$run" || echo "$?" > "$RUNS/$n.status"
  else
    echo "test_slm.sh: the real-Slurm suites on Slurm $rel run meanwhile ($RUNS/$n.log)" >&2
    eval "$run >\"\$RUNS/$n.log\" 2>&1 </dev/null &"
    PIDS="$PIDS $!"
    echo "$!" > "$RUNS/$n.pid"
  fi
done

status=0
if [ "$HOST_PATHS" = 1 ]; then
  set +e
  eval "SLM_SLURM_MODES=\$HOST_MODES SLM_TEST_SUMMARY=\$RUNS/host.summary \"\$VENV/bin/python\" -m pytest -p no:cacheprovider --timeout=600 -ra $HOST_ARGS"
  status=$?
  set -e
  if [ ! -s "$RUNS/host.summary" ]; then
    echo "0 passed, 1 failed, 0 skipped (pytest did not run: exit $status)" > "$RUNS/host.summary"
    [ "$status" -ne 0 ] || status=1
  fi
fi
n=0
for r in $CHROOTS; do
  n=$((n + 1)) rel=$(cat "$RUNS/$n.release")
  if [ -e "$RUNS/$n.pid" ]; then
    wait "$(cat "$RUNS/$n.pid")" || echo "$?" > "$RUNS/$n.status"
    echo "== Slurm $rel (tests/slurm-release.sh test), its output:"
    cat "$RUNS/$n.log"
  fi
  if [ -e "$RUNS/$n.status" ]; then status=1; fi
  [ -s "$RUNS/$n.summary" ] || echo "0 passed, 1 failed, 0 skipped (Slurm $rel: no summary)" > "$RUNS/$n.summary"
done
PIDS=""
if [ -n "$CHROOTS" ]; then   # each run's line, then the sum: the last line
  [ ! -e "$RUNS/host.summary" ] || echo "host: $(cat "$RUNS/host.summary")"
  n=0
  for r in $CHROOTS; do n=$((n + 1)); echo "Slurm $(cat "$RUNS/$n.release"): $(cat "$RUNS/$n.summary")"; done
  echo "test_slm.sh: all runs took $(( $(date +%s) - started )) s"
fi
cat "$RUNS"/*.summary | awk '{p += $1; f += $3; s += $5; if ($3 > 0) bad = 1}
  END {printf "%d passed, %d failed, %d skipped\n", p, f, s; exit bad}' || status=1
exit $status
