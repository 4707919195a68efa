#!/usr/bin/env bash
# slurm-release.sh - a newer Slurm release as a single-node cluster in a Debian chroot,
# beside the host's own 22.05 (tests/slurm-cluster.sh), for SLM's real-Slurm suites: the
# release's own slurmctld/slurmd/slurmdbd, sbatch and sacct, and the release's Debian
# Python running slm.py, slm_api.py and pytest.  Runs as root, without systemd or
# containers: debootstrap + chroot; daemons tracked by their pid files, never by name.
#
#   tests/slurm-release.sh build REL          debootstrap + packages; a no-op when built
#   tests/slurm-release.sh start REL [MODE]   mount, configure, (re)start, wait until idle
#   tests/slurm-release.sh stop REL           cancel its jobs, stop its daemons, unmount
#   tests/slurm-release.sh status REL         daemons, mode, sinfo
#   tests/slurm-release.sh shell REL [CMD..]  CMD (default: bash) in the chroot, in this checkout
#   tests/slurm-release.sh test REL MODES [PYTEST ARGS..]
#                                             what ./test_slm.sh runs: build, start, pytest in
#                                             the chroot once for the space-separated MODES
#                                             (conftest restarts the cluster per mode), stop
#   tests/slurm-release.sh remove REL         stop, unmount and delete the chroot
#   tests/slurm-release.sh releases           the releases this script knows
#
# REL    24.11 (Debian trixie, Python 3.13) | 26.05 (Debian sid, Python 3.14)
# MODE   linuxproc (default) | cgroup | cgroup-signal-children (proctrack/cgroup with
#        cgroup.conf SignalChildrenProcesses=yes, 23.11+: Slurm then signals every process
#        of the job, as linuxproc does)
#
# Each release is its own cluster: its own /run (munge socket, pid files), ports
# (7217-7499: REL's base, +1 slurmd, +2 slurmdbd), its own ClusterName and slurmdbd
# database on the host's MariaDB, and job ids in a range of its own
# (FirstJobId..MaxJobId, then they wrap): the cgroup v1 job directories
# (/sys/fs/cgroup/*/slurm/uid_*/job_N) are one machine-wide hierarchy shared with the
# host's cluster (ids from 1) and ../shared/slurm/releases.sh (100000, 200000, 300000).
# The checkout is bind-mounted at its own path inside, so the same paths work on both
# sides; conftest's cluster fixture calls this script from inside the chroot to switch
# modes (it knows where it is by /etc/slm-release).
#
# Environment: SLM_RELEASES_ROOT (default /var/tmp/slm-releases), SLM_RELEASES_MIRROR
# (default: the archive this machine's apt uses), SLM_SLURM_KILLWAIT (default 30).
#
# Learned from ../shared/slurm/releases.sh; what differs between releases is in
# docs/slurm-releases.md.
set -eu
BASE=${SLM_RELEASES_ROOT:-/var/tmp/slm-releases}
KILLWAIT=${SLM_SLURM_KILLWAIT:-30}
CPUS=32                  # as tests/slurm-cluster.sh: far more than the machine has, for
                         # dozens of mostly sleeping test jobs side by side
PKGS="slurmctld slurmd slurm-client slurmdbd munge procps python3 python3-bottle
      python3-pymysql python3-pytest python3-pytest-timeout"
ENVPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd -P)
ME=$CHECKOUT/tests/slurm-release.sh

die() { echo "slurm-release.sh: $*" >&2; exit 1; }

release() {  # release REL: the table; sets REL SUITE PORT FIRST MAXID R
  REL=$1
  case $REL in
    # suite, ports (ctld, slurmd = +1, slurmdbd = +2), job id range
    24.11) SUITE=trixie; PORT=7217; FIRST=24110000; MAXID=24199999 ;;
    26.05) SUITE=sid;    PORT=7227; FIRST=26050000; MAXID=26099999 ;;
    *) die "unknown release '$REL' (known: 24.11 26.05; 22.05 is the host's)" ;;
  esac
  CLUSTER=slm${REL/./}
  if [ -r /etc/slm-release ]; then
    R=""                 # inside the chroot (conftest switching modes): it is /
    [ "$(head -1 /etc/slm-release)" = "$REL" ] || die "this chroot is $(head -1 /etc/slm-release), not $REL"
  else
    R=$BASE/$REL
  fi
}

inside() { [ -z "$R" ]; }

in_root() {  # a command in the chroot, with a clean login-like environment
  local e=(env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" PATH="$ENVPATH")
  if inside; then "${e[@]}" "$@"; else chroot "$R" "${e[@]}" "$@"; fi
}

lock() {  # lock FILE FD: hold FILE's flock on FD (until unlock FD, or this script exits)
  eval "exec $2>\"\$1\""
  flock -w 1800 "$2" || die "$1 still held after 30 minutes"
}

unlock() { eval "exec $1>&-"; }

# --- build --------------------------------------------------------------------------

stamp() { printf '%s\n%s\n' "$REL" "$(echo $PKGS)"; }   # what a finished build wrote

built() { [ -n "$R" ] && [ "$(cat "$R/etc/slm-release" 2>/dev/null)" = "$(stamp)" ]; }

slurm_version() { in_root dpkg-query -W -f='${Version}' slurm-client | sed 's/-[^-]*$//'; }

mirror() {  # the package archive this machine's apt already uses
  local m=${SLM_RELEASES_MIRROR:-}
  [ -n "$m" ] || m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
                       /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$m" ] || die "no package archive found in /etc/apt (set SLM_RELEASES_MIRROR)"
  echo "$m"
}

build() {
  inside && die "build runs on the host"
  built && return 0
  mkdir -p "$BASE"
  lock "$BASE/$REL.build.lock" 7
  built && return 0      # another caller built it meanwhile
  local started; started=$(date +%s)
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null 7>&-
  echo "building Slurm $REL: Debian $SUITE in $R"
  if [ ! -x "$R/usr/bin/apt-get" ]; then
    rm -rf "$R.partial"
    debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      "$SUITE" "$R.partial" "$(mirror)" >"$BASE/$REL.debootstrap.log" 2>&1 7>&- \
      || die "debootstrap failed; see $BASE/$REL.debootstrap.log and $R.partial/debootstrap/debootstrap.log"
    mv "$R.partial" "$R"
  fi
  cp /etc/hosts "$R/etc/hosts"
  # the archive is a dated snapshot: its Release files have expired
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
    > "$R/etc/apt/apt.conf.d/99slm-snapshot"
  # packages must not start their daemons at install time (this script starts them)
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
  mount_all
  in_root apt-get update -qq 7>&-
  # shellcheck disable=SC2086
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $PKGS >/dev/null 7>&-
  in_root apt-get clean
  local have; have=$(slurm_version)
  case $have in "$REL".*) ;; *) die "Debian $SUITE now has Slurm $have, not $REL: update the table" ;; esac
  stamp > "$R/etc/slm-release"
  echo "built Slurm $have (Python $(in_root python3 -c 'import platform; print(platform.python_version())'))" \
       "in $(( $(date +%s) - started )) s"
}

# --- mounts -------------------------------------------------------------------------

mounted() { mountpoint -q "$R/$1"; }

mount_all() {  # what the daemons and jobs need; /run is the chroot's own
  inside && return 0
  mounted proc || mount -t proc proc "$R/proc"
  mounted sys || { mount --rbind /sys "$R/sys"; mount --make-rslave "$R/sys"; }
  mounted dev || { mount --rbind /dev "$R/dev"; mount --make-rslave "$R/dev"; }
  mounted run || mount -t tmpfs -o mode=0755 tmpfs "$R/run"
  # the checkout under test, at the same path inside
  mkdir -p "$R$CHECKOUT"
  mounted "${CHECKOUT#/}" || mount --bind "$CHECKOUT" "$R$CHECKOUT"
}

umount_all() {
  inside && return 0
  local m
  # every checkout ever bind-mounted here (another one may have been tested before)
  for m in $(awk -v r="$R/" 'index($2, r) == 1 {print substr($2, length(r))}' /proc/mounts | sort -r); do
    case $m in proc|sys|sys/*|dev|dev/*|run) continue ;; esac
    umount "$R/$m" 2>/dev/null || umount -l "$R/$m"
  done
  for m in run dev sys proc; do
    if mounted "$m"; then umount -R "$R/$m" 2>/dev/null || umount -R -l "$R/$m"; fi
  done
}

# --- configuration ------------------------------------------------------------------

put() {  # put CONTENT DEST MODE OWNER: write DEST if CONTENT differs; true if it did
  local dest=$R$2
  if [ -e "$dest" ] && [ "$(cat "$dest")" = "$1" ]; then return 1; fi
  printf '%s\n' "$1" > "$dest.new"
  chmod "$3" "$dest.new"; in_root chown "$4" "${2}.new"; mv "$dest.new" "$dest"
}

configure() {  # configure MODE; true if slurm.conf or cgroup.conf changed
  local mode=$1 proctrack=$1 children=no changed=1 node hw mem defmem
  if [ "$mode" = cgroup-signal-children ]; then proctrack=cgroup children=yes; fi
  mkdir -p "$R/etc/slurm" "$R/var/spool/slurmctld" "$R/var/spool/slurmd" "$R/var/log/slurm" "$R/run/munge"
  in_root chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  in_root chown munge:munge /run/munge
  if [ ! -s "$R/etc/munge/munge.key" ]; then
    in_root mungekey --create --keyfile=/etc/munge/munge.key
    in_root chown munge:munge /etc/munge/munge.key; chmod 0600 "$R/etc/munge/munge.key"
  fi
  # MailProg: the dispatcher tests/slurm-cluster.sh installs on the host (a site-mode
  # test points it at its own), and the ordinary user of that test's jobs
  mkdir -p "$R/usr/local/libexec"
  cp "$CHECKOUT/tests/slm-test-mailprog" "$R/usr/local/libexec/slm-test-mailprog"
  chmod 0755 "$R/usr/local/libexec/slm-test-mailprog"
  in_root id slmuser >/dev/null 2>&1 || in_root useradd -m -s /bin/bash slmuser
  node=$(cut -d. -f1 /proc/sys/kernel/hostname)
  # the real hardware line, the CPU count raised (config_overrides lets slurmd accept it)
  hw=$(in_root slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/UpTime=.*//' \
       | sed -E "s/CPUs=[0-9]+/CPUs=$CPUS/; s/CoresPerSocket=[0-9]+/CoresPerSocket=$CPUS/")
  mem=$(echo "$hw" | sed -nE 's/.*RealMemory=([0-9]+).*/\1/p')
  # as tests/slurm-cluster.sh: 1024 MB per CPU, or less so that all CPUS fit in memory
  defmem=$(( mem / CPUS / 64 * 64 )); [ "$defmem" -le 1024 ] || defmem=1024
  [ "$defmem" -ge 64 ] || defmem=64
  put "# generated by SLM's tests/slurm-release.sh: Slurm $REL, $mode
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
# job ids of its own: cgroup v1 job directories are machine-wide (see the script's head)
FirstJobId=$FIRST
MaxJobId=$MAXID
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/$proctrack
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/usr/local/libexec/slm-test-mailprog
KillWait=$KILLWAIT
MinJobAge=300
EnforcePartLimits=ALL
JobRequeue=1
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$node Default=NO MaxTime=00:02:00 State=UP" \
    /etc/slurm/slurm.conf 0644 root:root || changed=0
  # cgroup v1 (the host mounts the controllers as v1; deprecated since 25.05, still there
  # in 26.05): --mem is the job's RAM and RAM+swap limit, the kernel OOM-kills past it
  put "# generated by SLM's tests/slurm-release.sh: Slurm $REL, $mode
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
SignalChildrenProcesses=$children" /etc/slurm/cgroup.conf 0644 root:root && changed=1
  put "# generated by SLM's tests/slurm-release.sh: accounting on the host's MariaDB
AuthType=auth/munge
DbdHost=localhost
DbdPort=$((PORT + 2))
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=root
StorageLoc=slm_slurm_${REL/./}" /etc/slurm/slurmdbd.conf 0600 slurm:slurm || true
  [ "$changed" = 1 ]
}

# --- daemons ------------------------------------------------------------------------

pidfile() { case $1 in munged) echo /run/munge/munged.pid ;; *) echo "/run/$1.pid" ;; esac; }

running() {  # running NAME: its pid file (in the chroot) names a live process called NAME
  local f p; f=$R$(pidfile "$1"); [ -s "$f" ] || return 1
  p=$(cat "$f"); [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = "$1" ]
}

start_one() {  # start_one NAME RESTART CMD...
  local name=$1 restart=$2; shift 2
  if running "$name"; then
    [ "$restart" = 1 ] || return 0
    stop_one "$name"
  fi
  rm -f "$R$(pidfile "$name")"
  # it daemonizes itself; no lock or pipe of ours may stay open in it
  in_root "$@" </dev/null >>"$R/var/log/slurm/daemon-start.log" 2>&1 7>&- 8>&- 9>&-
  for _ in $(seq 100); do running "$name" && break; sleep 0.1; done
  running "$name" || die "$name did not start; see $R/var/log/slurm/"
  echo "started $name (pid $(cat "$R$(pidfile "$name")"))"
}

stop_one() {
  local name=$1 p
  if running "$name"; then
    p=$(cat "$R$(pidfile "$name")"); kill "$p"
    for _ in $(seq 300); do [ -d "/proc/$p" ] || break; sleep 0.1; done
    [ ! -d "/proc/$p" ] || die "$name (pid $p) did not stop in 30 s"
    echo "stopped $name (pid $p)"
  fi
  rm -f "$R$(pidfile "$name")"   # slurmctld and slurmdbd leave theirs behind
}

dbd_answers() { in_root sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }

start() {  # start MODE: (re)configure and (re)start what changed, wait until the node is idle
  local mode=${1:-linuxproc} restart=0 st=""
  case $mode in linuxproc|cgroup|cgroup-signal-children) ;; *)
    die "mode must be linuxproc, cgroup or cgroup-signal-children, not '$mode'" ;; esac
  inside || { build; mount_all; }
  lock "$R/run/slm-release.lock" 9
  configure "$mode" && restart=1
  start_one munged 0 runuser -u munge -- /usr/sbin/munged
  start_one slurmdbd 0 /usr/sbin/slurmdbd
  # 26.05's slurmdbd fails its first TLS attempt against MariaDB 10.11, then connects
  for _ in $(seq 120); do dbd_answers && break; sleep 0.25; done
  dbd_answers || die "slurmdbd does not answer; see $R/var/log/slurm/slurmdbd.log"
  [ -n "$(in_root sacctmgr -n -P show cluster "$CLUSTER" format=cluster 2>/dev/null)" ] \
    || in_root sacctmgr -i add cluster "$CLUSTER" >/dev/null
  start_one slurmctld "$restart" /usr/sbin/slurmctld
  start_one slurmd "$restart" /usr/sbin/slurmd
  for _ in $(seq 240); do
    st=$(in_root sinfo -h -o %T 2>/dev/null | head -1)
    case $st in
      idle|mixed|allocated) break ;;
      down*|drain*|fail*) in_root scontrol update NodeName="$(cut -d. -f1 /proc/sys/kernel/hostname)" \
                            State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.25
  done
  case $st in idle|mixed|allocated) ;; *) die "node not idle after 60 s (state: ${st:-unknown})" ;; esac
  echo "Slurm $REL ($CLUSTER, ports $PORT-$((PORT + 2))): node $st, $mode"
  unlock 9   # the suites' own start (conftest, inside) takes it next
}

stop() {  # cancel the cluster's jobs, await them, stop the daemons, unmount
  if [ -n "$R" ] && [ ! -d "$R/run/munge" ]; then umount_all; return 0; fi
  if running slurmctld; then
    local jobs; jobs=$(in_root squeue -h -o %A 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      in_root scancel $jobs 2>/dev/null || true
      for _ in $(seq $(( (KILLWAIT + 30) * 4 ))); do
        [ -z "$(in_root squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.25
      done
    fi
  fi
  for d in slurmd slurmctld slurmdbd munged; do stop_one "$d"; done
  umount_all
}

status() {
  for d in munged slurmdbd slurmctld slurmd; do
    if running "$d"; then echo "$d: pid $(cat "$R$(pidfile "$d")")"; else echo "$d: not running"; fi
  done
  running slurmctld || return 0
  grep -hE '^(ProctrackType|SignalChildrenProcesses)' "$R/etc/slurm/slurm.conf" "$R/etc/slurm/cgroup.conf"
  in_root sinfo
}

# --- running the suites -------------------------------------------------------------

run_tests() {  # run_tests MODES [PYTEST ARGS...]: pytest in the chroot, on this checkout
  local modes=$1 started status=0 summary
  shift
  inside && die "test runs on the host"
  started=$(date +%s)
  # one test run per release at a time (the modes restart its cluster)
  mkdir -p "$BASE"; lock "$BASE/$REL.session.lock" 8
  build
  start linuxproc
  summary=/run/slm-test-summary; rm -f "$R$summary"
  echo "== Slurm $(slurm_version) (Debian $SUITE chroot," \
       "$(in_root python3 -c 'import platform; print("Python", platform.python_version())')," \
       "modes: ${modes:-linuxproc})"
  # only what the suites read: no .venv, no host Python, nothing of the caller's Slurm;
  # in the background, so that a TERM or INT (test_slm.sh interrupted) stops it here
  in_root /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$CHECKOUT" \
    env SLM_SLURM_RELEASE="$REL" SLM_SLURM_MODES="$modes" SLM_TEST_SUMMARY="$summary" \
        PYTHONDONTWRITEBYTECODE=1 \
        SLM_REQUIRE_SLURM="${SLM_REQUIRE_SLURM:-}" SLM_REQUIRE_MARIADB="${SLM_REQUIRE_MARIADB:-}" \
        ${SLM_TRANSPARENCY_DEADLINE:+SLM_TRANSPARENCY_DEADLINE=$SLM_TRANSPARENCY_DEADLINE} \
        python3 -m pytest -p no:cacheprovider --timeout=600 -ra "$@" 8>&- 9>&- &
  local pid=$!
  trap 'kill "$pid" 2>/dev/null || true' TERM INT
  set +e
  wait "$pid"; status=$?
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
  trap - TERM INT
  set -e
  local line; line=$(cat "$R$summary" 2>/dev/null || true)
  [ -n "$line" ] || { line="0 passed, 1 failed, 0 skipped (pytest did not run: exit $status)"
                      [ "$status" -ne 0 ] || status=1; }
  stop >/dev/null
  echo "== Slurm $REL: $line, $(( $(date +%s) - started )) s"
  [ -z "${SLM_TEST_SUMMARY:-}" ] || echo "$line" > "$SLM_TEST_SUMMARY"
  return $status
}

shell() {
  local status=0
  build; mount_all
  [ $# -gt 0 ] || set -- bash
  in_root /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$CHECKOUT" "$@" || status=$?
  running slurmctld || umount_all   # nothing left mounted for nothing
  return $status
}

remove() {
  inside && die "remove runs on the host"
  stop
  ! awk -v r="$R/" 'index($2, r) == 1' /proc/mounts | grep -q . || die "$R still has mounts"
  rm -rf "$R" "$R.partial"
  echo "removed $R"
}

[ "$(id -u)" = 0 ] || die "must run as root"
cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
  releases) echo "24.11 26.05" ;;
  build)  release "${1:?release}"; build; running slurmctld || umount_all ;;
  start)  release "${1:?release}"; start "${2:-linuxproc}" ;;
  stop)   release "${1:?release}"; stop ;;
  status) release "${1:?release}"; status ;;
  shell)  release "${1:?release}"; shift; shell "$@" ;;
  test)   release "${1:?release}"; shift; run_tests "$@" ;;
  remove) release "${1:?release}"; remove ;;
  *) echo "usage: $0 build|start|stop|status|shell|test|remove REL ... | releases" >&2; exit 2 ;;
esac
