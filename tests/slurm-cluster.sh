#!/usr/bin/env bash
# slurm-cluster.sh - a single-node Slurm 22.05 cluster on this Debian machine, for SLM's
# end-to-end tests and CI, set up like a production cluster where SLM can tell the
# difference: slurmdbd accounting (plain `sacct`), memory enforced by cgroups (--mem,
# OUT_OF_MEMORY), proctrack/cgroup on request. Runs as root, without systemd: the daemons
# are started by hand and tracked by their pid files (never killed by name).
#
#   tests/slurm-cluster.sh [start]   install if missing, configure, (re)start, wait until idle;
#                                    a no-op (well under a second) when nothing changed
#   tests/slurm-cluster.sh stop      stop the Slurm daemons and munged this script started
#   tests/slurm-cluster.sh status    daemon pids, proctrack/accounting mode and sinfo
#
# Environment:
#   SLM_SLURM_PROCTRACK  linuxproc (default) | cgroup | pgid. cgroup is what production
#                        clusters run: Slurm then signals only the batch process.
#   SLM_SLURM_ACCOUNTING 1 (default): slurmdbd on the local MariaDB (127.0.0.1:3306, root,
#                        no password), so `sacct` works as on real clusters. 0: no slurmdbd,
#                        accounting_storage/none (sacct says "Slurm accounting storage is
#                        disabled"), to test the fallback. jobcomp/filetxt (`sacct -c`) is
#                        there in both.
#   SLM_SLURM_KILLWAIT   seconds between SIGTERM and SIGKILL on cancel/timeout (default 30)
#   SLM_SLURM_CPUS       CPUs the node advertises (default 32: far more than this machine
#                        has, so that dozens of mostly sleeping test jobs run side by side)
#
# In every mode memory is a consumable enforced by task/cgroup (cgroup v1): a job gets its
# --mem (or DefMemPerCPU per CPU, sized so that SLM_SLURM_CPUS default jobs fit in the
# node's memory) as its cgroup's RAM+swap limit, and the kernel OOM-kills past it.
#
# Concurrent callers (one per test module, CI next to a developer) are serialised by an
# flock on /run/slm-slurm.lock: only one reconfigures and restarts at a time, and the next
# one finds the configuration unchanged and does nothing.
#
# Learned from ../shared/slurm/local-slurm.sh; see ../shared/slurm/FACTS.md for what
# Slurm does with signals under each proctrack plugin.
set -eu
NODE=$(hostname -s)
PROCTRACK=${SLM_SLURM_PROCTRACK:-linuxproc}
ACCOUNTING=${SLM_SLURM_ACCOUNTING:-1}
KILLWAIT=${SLM_SLURM_KILLWAIT:-30}
CPUS=${SLM_SLURM_CPUS:-32}
MARK=/run/slm-slurm            # "we started daemon X" markers live here
LOCK=/run/slm-slurm.lock
CONF=/etc/slurm/slurm.conf
CGROUP_CONF=/etc/slurm/cgroup.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
RESTART=0       # slurm.conf or cgroup.conf changed: restart slurmctld and slurmd
RESTART_DBD=0   # slurmdbd.conf changed: restart slurmdbd
STARTED=0       # the last start_one started its daemon

case $PROCTRACK in linuxproc|cgroup|pgid) ;; *)
  echo "slurm-cluster.sh: SLM_SLURM_PROCTRACK must be linuxproc, cgroup or pgid" >&2; exit 2 ;;
esac
case $ACCOUNTING in 0|1) ;; *)
  echo "slurm-cluster.sh: SLM_SLURM_ACCOUNTING must be 0 or 1" >&2; exit 2 ;;
esac
case $CPUS in ''|*[!0-9]*|0)
  echo "slurm-cluster.sh: SLM_SLURM_CPUS must be a positive number" >&2; exit 2 ;;
esac

pidfile() { case $1 in munged) echo /run/munge/munged.pid ;; *) echo "/run/$1.pid" ;; esac; }

running() {   # running NAME: the pid file names a live process whose command is NAME
  local f p; f=$(pidfile "$1"); [ -s "$f" ] || return 1
  p=$(cat "$f"); [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = "$1" ]
}

lock() {   # one (re)configure/restart at a time; held until this script exits
  exec 9>"$LOCK"
  flock -w 600 9 || { echo "slurm-cluster.sh: $LOCK still held after 600 s" >&2; exit 1; }
}

install_packages() {
  local pkgs=""
  command -v slurmctld >/dev/null || pkgs="$pkgs slurmctld"
  command -v slurmd >/dev/null || pkgs="$pkgs slurmd"
  command -v sbatch >/dev/null || pkgs="$pkgs slurm-client"
  command -v munged >/dev/null || pkgs="$pkgs munge"
  # installed in both accounting modes, so that switching needs no apt
  command -v slurmdbd >/dev/null || pkgs="$pkgs slurmdbd"
  command -v mariadbd >/dev/null || pkgs="$pkgs mariadb-server mariadb-client"
  [ -n "$pkgs" ] || return 0
  echo "installing$pkgs ..."
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $pkgs >/dev/null 9>&- \
    || { apt-get update >/dev/null 9>&- \
         && apt-get install -y --no-install-recommends $pkgs >/dev/null 9>&-; }
}

put() {  # put TMPFILE DEST MODE OWNER: move TMPFILE to DEST if it differs; true if it did
  local new=$1 dest=$2 mode=$3 owner=$4
  if cmp -s "$new" "$dest"; then
    rm -f "$new"; chmod "$mode" "$dest"; chown "$owner" "$dest"; return 1
  fi
  chmod "$mode" "$new"; chown "$owner" "$new"; mv "$new" "$dest"; echo "wrote $dest"
}

configure() {
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge "$MARK"
  chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  chown munge:munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
  fi
  # MailProg: a fixed dispatcher, so that a site-mode test sets its own MailProg without
  # a reconfigure (tests/test_site_mode.py); and an ordinary user for its jobs (MailProg
  # runs as SlurmUser and must not read what a user's private files hold)
  mkdir -p /usr/local/libexec
  cp "$(cd "$(dirname "$0")" && pwd -P)/slm-test-mailprog" /usr/local/libexec/slm-test-mailprog.new
  put /usr/local/libexec/slm-test-mailprog.new /usr/local/libexec/slm-test-mailprog 0755 \
    root:root || true
  id slmuser >/dev/null 2>&1 || useradd -m -s /bin/bash slmuser
  # the real hardware line, with the CPU count raised (config_overrides lets slurmd accept it)
  local hw mem defmem
  hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/UpTime=.*//' \
    | sed -E "s/CPUs=[0-9]+/CPUs=$CPUS/; s/CoresPerSocket=[0-9]+/CoresPerSocket=$CPUS/")
  mem=$(echo "$hw" | sed -nE 's/.*RealMemory=([0-9]+).*/\1/p')
  # memory is consumable (CR_Core_Memory): a job without --mem gets DefMemPerCPU per CPU.
  # Production-like 1024 MB, but no more than 1/CPUS of the node (in 64 MB steps), or the
  # advertised CPUs would not all be usable by default jobs at once.
  defmem=$(( mem / CPUS / 64 * 64 )); [ "$defmem" -le 1024 ] || defmem=1024
  [ "$defmem" -ge 64 ] || defmem=64
  local acct
  if [ "$ACCOUNTING" = 1 ]; then
    # AccountingStorageEnforce is left unset (= none): jobs of users without an
    # association are accepted and accounted, as a test machine's users have none
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  else
    acct="AccountingStorageType=accounting_storage/none"
  fi
  local new; new=$(mktemp /etc/slurm/.slm-new.XXXXXX)   # same file system: mv is atomic
  cat > "$new" <<CONFEOF
# generated by SLM's tests/slurm-cluster.sh - single node, no systemd
# (SLM_SLURM_PROCTRACK=$PROCTRACK SLM_SLURM_ACCOUNTING=$ACCOUNTING SLM_SLURM_CPUS=$CPUS)
ClusterName=local
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/$PROCTRACK
# memory limits in every proctrack mode; not task/affinity: it would bind tasks to the
# advertised CPUs, which this machine does not have
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/linux
$acct
# one line per finished job, read with "sacct -c": works with and without slurmdbd
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
# Slurm's default, said out loud: batch jobs may be requeued (sbatch --requeue, scontrol requeue)
JobRequeue=1
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$NODE Default=NO MaxTime=00:02:00 State=UP
CONFEOF
  if put "$new" "$CONF" 0644 root:root; then RESTART=1; fi
  # cgroup v1 (this machine mounts the v1 memory and freezer controllers); the job's RAM
  # limit is its --mem, and so is its RAM+swap limit (AllowedSwapSpace=0): there is no swap to spill
  # into, and on a machine with swap a job must not swap instead of being OOM-killed
  new=$(mktemp /etc/slurm/.slm-new.XXXXXX)
  printf '%s\n' '# generated by SLM'"'"'s tests/slurm-cluster.sh' 'CgroupPlugin=cgroup/v1' \
    'ConstrainCores=no' 'ConstrainDevices=no' 'ConstrainRAMSpace=yes' 'ConstrainSwapSpace=yes' \
    'AllowedSwapSpace=0' > "$new"
  if put "$new" "$CGROUP_CONF" 0644 root:root; then RESTART=1; fi
  # written in both modes (switching back needs no restart of slurmdbd); slurmdbd refuses
  # a file that is not its SlurmUser's and private
  new=$(mktemp /etc/slurm/.slm-new.XXXXXX)
  cat > "$new" <<DBDEOF
# generated by SLM's tests/slurm-cluster.sh - accounting on the local MariaDB
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
PidFile=$(pidfile slurmdbd)
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=root
StorageLoc=slurm_acct_db
DBDEOF
  if put "$new" "$DBD_CONF" 0600 slurm:slurm; then RESTART_DBD=1; fi
  if [ "$RESTART" = 1 ]; then echo "configuration changed (proctrack/$PROCTRACK," \
    "accounting=$ACCOUNTING, $CPUS CPUs, DefMemPerCPU=$defmem)"; fi
}

# MariaDB as slurmdbd.conf reaches it: TCP 127.0.0.1:3306, root, no password
db() { "$@" --protocol=tcp -h127.0.0.1 -P3306 -uroot; }   # db mariadb|mariadb-admin ARGS...
db_ok() { db mariadb -e 'SELECT 1' >/dev/null 2>&1; }

ensure_mariadb() {  # slurmdbd's storage: the MariaDB that SLM's own tests use
  if ! db mariadb-admin ping >/dev/null 2>&1; then
    echo "starting MariaDB"
    install -d -o mysql -g mysql /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
    for _ in $(seq 120); do db mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  db_ok && return 0
  # a fresh Debian install lets root in through the unix socket only; this test machine's
  # convention (SLM's MariaDB tests rely on it too) is root over TCP without a password
  if mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    echo "MariaDB: allowing root@127.0.0.1 without a password (test machine convention)"
    mariadb -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  fi
  db_ok || { echo "slurm-cluster.sh: MariaDB at 127.0.0.1:3306 does not let root in" \
               "without a password; slurmdbd needs it (or use SLM_SLURM_ACCOUNTING=0)" >&2; exit 1; }
}

dbd_answers() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }

register() {  # the cluster must be in the database before slurmctld reports to it
  # checked once per slurmdbd start (each sacctmgr call costs ~0.2 s: start must stay fast)
  [ ! -e "$MARK/registered" ] || [ "$STARTED" = 1 ] || return 0
  for _ in $(seq 60); do dbd_answers && break; sleep 0.5; done
  dbd_answers || { echo "slurmdbd does not answer; see /var/log/slurm/slurmdbd.log" >&2; exit 1; }
  if [ -z "$(sacctmgr -n -P show cluster local format=cluster 2>/dev/null)" ]; then
    # also creates account "root" and root's association; nothing else is needed while
    # AccountingStorageEnforce is unset (other users' jobs are accepted and accounted)
    sacctmgr -i add cluster local >/dev/null
    echo "registered cluster local in slurmdbd"
  fi
  touch "$MARK/registered"
}

stop_one() {  # stop_one NAME [force]: SIGTERM the pid from the pid file, wait until it is gone
  local name=$1 p
  if [ ! -e "$MARK/$name" ] && [ "${2:-}" != force ]; then
    if running "$name"; then echo "$name: running but not started by this script, left alone"
    else echo "$name: not running"; fi
    return 0
  fi
  if running "$name"; then
    p=$(cat "$(pidfile "$name")"); kill "$p"
    for _ in $(seq 150); do [ -d "/proc/$p" ] || break; sleep 0.2; done
    [ ! -d "/proc/$p" ] || { echo "$name (pid $p) did not stop in 30 s" >&2; exit 1; }
    echo "stopped $name (pid $p)"
  fi
  rm -f "$MARK/$name" "$(pidfile "$name")"   # slurmctld and slurmdbd leave a stale pid file
}

start_one() {  # start_one NAME RESTART CMD...  (each daemon forks into the background itself)
  local name=$1 restart=$2; shift 2
  STARTED=0
  if running "$name"; then
    if [ "$restart" = 1 ]; then stop_one "$name" force
    else echo "$name already running (pid $(cat "$(pidfile "$name")"))"; return 0; fi
  fi
  rm -f "$(pidfile "$name")"   # a stale one would look like a live daemon to a later check
  "$@" 9>&-                    # the daemon must not inherit (and so keep holding) the lock
  for _ in $(seq 50); do running "$name" && break; sleep 0.2; done
  running "$name" || { echo "$name failed to start; see /var/log/slurm or /var/log/munge" >&2; exit 1; }
  STARTED=1; touch "$MARK/$name"; echo "started $name (pid $(cat "$(pidfile "$name")"))"
}

wait_idle() {
  local st=""
  for _ in $(seq 120); do
    st=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
    case $st in
      idle|mixed|allocated) echo "node $NODE is $st"; return 0 ;;
      down*|drain*|fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  echo "node $NODE not idle after 60s (state: ${st:-unknown})" >&2; exit 1
}

case ${1:-start} in
  start)
    [ "$(id -u)" = 0 ] || { echo "slurm-cluster.sh: must run as root" >&2; exit 1; }
    lock; install_packages; configure
    start_one munged 0 runuser -u munge -- /usr/sbin/munged
    if [ "$ACCOUNTING" = 1 ]; then
      ensure_mariadb
      start_one slurmdbd "$RESTART_DBD" /usr/sbin/slurmdbd
      register
    elif running slurmdbd; then
      stop_one slurmdbd   # not needed without accounting (left alone if not ours)
    fi
    start_one slurmctld "$RESTART" /usr/sbin/slurmctld
    start_one slurmd "$RESTART" /usr/sbin/slurmd
    wait_idle
    scontrol show config | grep -E '^(ProctrackType|TaskPlugin|AccountingStorageType|DefMemPerCPU|KillWait) ' ;;
  stop)   lock; for d in slurmd slurmctld slurmdbd munged; do stop_one "$d"; done
          rm -f "$MARK/registered" ;;
  status) for d in munged slurmdbd slurmctld slurmd; do
            if running "$d"; then echo "$d: pid $(cat "$(pidfile "$d")")"; else echo "$d: not running"; fi
          done
          grep -hE '^(ProctrackType|AccountingStorageType|DefMemPerCPU)' "$CONF" 2>/dev/null || true
          sinfo 2>/dev/null || true ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
