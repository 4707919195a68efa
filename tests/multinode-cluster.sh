#!/usr/bin/env bash
# multinode-cluster.sh - a real multi-node Slurm 22.05 cluster on this one machine, for SLM's
# multi-node tests (tests/test_multinode.py) and for a developer who wants to try a job across
# nodes, a node crash or a network partition. Root, no systemd, no containers.
#
#   login node  = this host: munged, slurmdbd (:7119, MariaDB database mn_slurm_acct_db),
#                 slurmctld (:7117), the tests' slm_api.py on 10.213.0.1
#   node1..N    = one network + UTS + mount namespace each: hostname nodeN, address
#                 10.213.0.1N on the bridge br-slm (10.213.0.1/24), slurmd (:7118), and their
#                 own /tmp, /dev/shm and /var/spool/slurmd; /etc/hosts and /etc/slurm are the
#                 cluster's. No default route: a node reaches the login node and its peers only.
#   shared      = the rest of the file system, as a cluster's shared home/project file system:
#                 MN_DIR (/var/tmp/slm-multinode), this checkout and MN_SHARE are at the same
#                 paths on every node even when they lie under /tmp.
#
# It runs beside the host's own single-node cluster (tests/slurm-cluster.sh) and touches none
# of it: its own ports, munged (socket under /run/slm-mn), config dir ($MN_DIR/etc/slurm),
# ClusterName=mn, database, and cgroup roots (slurm_nodeN: Debian builds slurmd with
# multiple-slurmd support, so each node's cgroups are its own).
#
#   tests/multinode-cluster.sh up            make/start what is missing, wait until every node
#                                            is idle (~3 s cold, well under 1 s when all is up)
#   tests/multinode-cluster.sh down [--purge] stop everything, remove namespaces, bridge and
#                                            mounts (--purge: also state, logs, config, database)
#   tests/multinode-cluster.sh status        daemons, nodes (link, slurmd, processes), sinfo
#   tests/multinode-cluster.sh env           the line to use the cluster from the login node
#   tests/multinode-cluster.sh on NODE CMD.. run CMD on a node (its network, name, mounts)
#   tests/multinode-cluster.sh kill-node NODE      SIGKILL every process of the node (a crash;
#                                            Slurm calls it DOWN after MN_SLURMD_TIMEOUT)
#   tests/multinode-cluster.sh partition NODE      cut the node's link (its processes run on,
#                                            its file system stays shared)
#   tests/multinode-cluster.sh heal NODE [--now]   link up again; Slurm takes a DOWN node back,
#                                            and kills the jobs it ended there meanwhile, at its
#                                            next registration request (~100 s); --now has it
#                                            register at once (slurmd restart, then reconfigure)
#   tests/multinode-cluster.sh reboot-node NODE    crash, then boot: fresh /tmp, /dev/shm, spool
#                                            and cgroups, link up, slurmd (idle in ~3 s)
#
# Environment (up reads them; a change restarts the cluster, as a reboot of every node):
#   MN_DIR             /var/tmp/slm-multinode   state, logs, config (shared with the nodes)
#   MN_NODES           3 (1..9)
#   MN_PROCTRACK       cgroup (proctrack/cgroup + task/cgroup, memory enforced: cgroup v1,
#                      ConstrainRAMSpace) | linuxproc (proctrack/linuxproc, task/none)
#   MN_SLURMD_TIMEOUT  20: seconds of silence before slurmctld calls a node DOWN (Slurm: 300)
#   MN_CRED_EXPIRE     10: seconds a requeued job waits before it may run again (Slurm: 120)
#   MN_CPUS            8 CPUs advertised per node (mostly sleeping test jobs side by side)
#   MN_SHARE           more paths the nodes must see at the same path (space-separated)
#
# Learned from ../shared/slurm/multinode.sh and MULTINODE.md (what Slurm and the kernel do
# here); docs/multinode.md says what the simulation does not reproduce.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
MN=${MN_DIR:-/var/tmp/slm-multinode}
NODES=${MN_NODES:-3}
PROCTRACK=${MN_PROCTRACK:-cgroup}
SLURMD_TIMEOUT=${MN_SLURMD_TIMEOUT:-20}
CRED_EXPIRE=${MN_CRED_EXPIRE:-10}
CPUS=${MN_CPUS:-8}
SHARE="$MN $ROOT ${MN_SHARE:-}"

NET=10.213.0
BRIDGE=br-slm
RUN=/run/slm-mn                 # pid files, munge socket, the namespaces' anchors
LOCK=/run/slm-mn.lock
ETC=$MN/etc/slurm
CONF=$ETC/slurm.conf
LOGS=$MN/log
STATE=$MN/state
DB=mn_slurm_acct_db
CTLD_PORT=7117 SLURMD_PORT=7118 DBD_PORT=7119
LOGIN=$(hostname -s)            # slurmctld insists on running on the host SlurmctldHost names
export SLURM_CONF=$CONF         # every Slurm command below talks to this cluster

say() { printf 'multinode: %s\n' "$*"; }
die() { printf 'multinode: %s\n' "$*" >&2; exit 1; }

case $NODES in [1-9]) ;; *) die "MN_NODES must be 1..9" ;; esac
case $PROCTRACK in cgroup|linuxproc) ;; *) die "MN_PROCTRACK must be cgroup or linuxproc" ;; esac
for v in "$SLURMD_TIMEOUT" "$CRED_EXPIRE" "$CPUS"; do
  case $v in ''|*[!0-9]*) die "MN_SLURMD_TIMEOUT, MN_CRED_EXPIRE, MN_CPUS must be numbers" ;; esac
done

node_names() { local i; for i in $(seq "$NODES"); do echo "node$i"; done; }
netns() { echo "slm-mn-$1"; }             # the node's network namespace (ip netns name)
veth() { echo "veth-mn-$1"; }             # its link's login-node end, on the bridge
addr() { echo "$NET.1${1#node}"; }
known_node() {
  case $1 in node[1-9]) [ -e "/run/netns/$(netns "$1")" ] && return 0 ;; esac
  die "$1: no such node (is the cluster up? nodes: $(ls /run/netns 2>/dev/null \
    | sed -n 's/^slm-mn-//p' | tr '\n' ' '))"
}

lock() {   # one up/down/reboot at a time (the suite, a developer); held until exit
  exec 9>"$LOCK"
  flock -w 300 9 || die "$LOCK still held after 300 s"
}

await() {  # await SECONDS CMD...: CMD until it succeeds, every 0.1 s; false at the deadline
  local end=$(( $(date +%s%N) + $1 * 1000000000 )); shift
  until "$@"; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

alive() {  # alive COMM PIDFILE: the pid file names a live process called COMM
  local p; [ -s "$2" ] || return 1; p=$(cat "$2")
  [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$1" ]
}

stop_daemons() {  # stop_daemons COMM:PIDFILE...: SIGTERM to all at once, each waited for up
  local d p pids=""   # to 20 s, then SIGKILLed (by pid, never by name)
  for d in "$@"; do
    if alive "${d%%:*}" "${d#*:}"; then
      p=$(cat "${d#*:}"); kill "$p" 2>/dev/null || true; pids="$pids $p"
      say "stopping ${d%%:*} (pid $p)"
    fi
    rm -f "${d#*:}"
  done
  for p in $pids; do
    await 20 test ! -d "/proc/$p" || { kill -9 "$p" 2>/dev/null || true; await 5 test ! -d "/proc/$p" || true; }
  done
}

is_mount() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# --- packages and the configuration -------------------------------------------------------

install_packages() {   # what tests/slurm-cluster.sh installs, if it has not run here yet
  local pkgs="" c
  for c in slurmctld:slurmctld slurmd:slurmd slurmdbd:slurmdbd sbatch:slurm-client munged:munge; do
    command -v "${c%%:*}" >/dev/null 2>&1 || pkgs="$pkgs ${c#*:}"
  done
  [ -n "$pkgs" ] || return 0
  say "installing$pkgs"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 9>&- \
    || { apt-get update -qq 9>&- && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 9>&-; }
}

CHANGED=0   # configure(): slurm.conf, cgroup.conf or the shared paths changed
DBD_CHANGED=0

place() {  # place NEW DEST MODE OWNER: install NEW as DEST when it differs; true if it did
  if cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
  chmod "$3" "$1"; chown "$4" "$1"; mv "$1" "$2"
}

configure() {
  mkdir -p "$ETC" "$LOGS" "$STATE/slurmctld" "$RUN"
  chown slurm:slurm "$LOGS" "$STATE/slurmctld"
  local task select_params nodelines="" i cgroup_lines
  if [ "$PROCTRACK" = cgroup ]; then
    # what production clusters run: Slurm signals the batch process only; memory is a
    # consumable and enforced (a job's --mem, else DefMemPerCPU per CPU, is its cgroup's limit)
    task=task/cgroup
    select_params="SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500"
    cgroup_lines="ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0"
  else
    task=task/none
    select_params="SelectTypeParameters=CR_Core"
    cgroup_lines="ConstrainRAMSpace=no"
  fi
  for i in $(seq "$NODES"); do
    nodelines="${nodelines}NodeName=node$i NodeAddr=$NET.1$i CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=8000 State=UNKNOWN
"
  done
  cat > "$CONF.new" <<EOF
# generated by SLM's tests/multinode-cluster.sh: login node $LOGIN ($NET.1),
# compute nodes node[1-$NODES] in namespaces (MN_PROCTRACK=$PROCTRACK)
# shared: $SHARE
ClusterName=mn
SlurmctldHost=$LOGIN($NET.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=slurm
AuthType=auth/munge
# cred_expire: also how long a requeued job waits before it may run again (Slurm's default 120)
AuthInfo=socket=$RUN/munge/munge.socket.2,cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE/slurmctld
# a tmpfs of each node's own
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
ProctrackType=proctrack/$PROCTRACK
TaskPlugin=$task
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$LOGIN
AccountingStoragePort=$DBD_PORT
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
SelectType=select/cons_tres
$select_params
SlurmdParameters=config_overrides
# a node that stopped answering is back when it registers again; one that rebooted behind
# slurmctld's back stays DOWN until resumed (reboot-node does that, as an admin would)
ReturnToService=1
# a test value: a dead or cut-off node is DOWN (and its jobs NODE_FAIL) within ~30 s
SlurmdTimeout=$SLURMD_TIMEOUT
# test values: a requeued job is eligible again after cred_expire, and then started within
# a few seconds (Slurm's main scheduling loop runs every 60 s by default)
SchedulerParameters=sched_interval=3
MailProg=/bin/true
KillWait=30
MinJobAge=300
EnforcePartLimits=ALL
JobRequeue=1
${nodelines}PartitionName=debug Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=node[1-$NODES] Default=NO MaxTime=00:02:00 State=UP
EOF
  if place "$CONF.new" "$CONF" 0644 root:root; then CHANGED=1; fi
  printf '%s\n' "# generated by SLM's tests/multinode-cluster.sh" CgroupPlugin=cgroup/v1 \
    ConstrainCores=no ConstrainDevices=no "$cgroup_lines" > "$ETC/cgroup.conf.new"
  if place "$ETC/cgroup.conf.new" "$ETC/cgroup.conf" 0644 root:root; then CHANGED=1; fi
  cat > "$ETC/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$RUN/munge/munge.socket.2
DbdHost=$LOGIN
DbdPort=$DBD_PORT
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=root
StorageLoc=$DB
EOF
  # slurmdbd refuses a file that is not its SlurmUser's and private
  if place "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf" 0600 slurm:slurm; then DBD_CHANGED=1; fi
  # the nodes' /etc/hosts (the login node's own is left alone): no DNS on a node
  { echo "127.0.0.1 localhost"; echo "$NET.1 $LOGIN login"
    for i in $(seq 9); do echo "$NET.1$i node$i"; done; } > "$MN/etc/hosts.new"
  place "$MN/etc/hosts.new" "$MN/etc/hosts" 0644 root:root || true
}

# --- munged: an instance of our own, its socket in $RUN (a path every namespace sees) -------

munge_up() {
  install -d -o munge -g munge -m 0755 "$RUN/munge"
  alive munged "$RUN/munge/munged.pid" && return 0
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged --socket="$RUN/munge/munge.socket.2" \
    --pid-file="$RUN/munge/munged.pid" --log-file="$RUN/munge/munged.log" \
    --seed-file="$RUN/munge/munged.seed" 9>&-
  await 10 alive munged "$RUN/munge/munged.pid" || die "munged did not start ($RUN/munge/munged.log)"
  say "started munged (pid $(cat "$RUN/munge/munged.pid"))"
}

# --- the network: a bridge on the login node, a veth pair per node ----------------------------

net_up() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local n ns
  for n in $(node_names); do
    ns=$(netns "$n")
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    ip link show "$(veth "$n")" >/dev/null 2>&1 \
      || ip link add "$(veth "$n")" type veth peer name eth0 netns "$ns"
    sysctl -qw "net.ipv6.conf.$(veth "$n").disable_ipv6=1" 2>/dev/null || true
    ip link set "$(veth "$n")" master "$BRIDGE" up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
    ip -n "$ns" link set lo up
    # the node's own /24 only: the login node and the peers (srun's I/O, slurmd's fan-out)
    ip -n "$ns" addr replace "$(addr "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

# --- UTS + mount namespaces, kept alive by bind mounts on files in $RUN/ns --------------------

hidden_by_node() {  # the path lies under what a node has of its own (then it is bound in)
  case $1 in /tmp|/tmp/*|/dev/shm|/dev/shm/*|/var/spool/slurmd|/var/spool/slurmd/*) return 0 ;; esac
  return 1
}

ns_up() {  # ns_up NODE: its hostname, clock since boot and private mounts (kept until ns_down)
  local n=$1 p i=0 held=""
  mkdir -p "$RUN/ns" "$RUN/hold"
  # unshare --mount=FILE needs FILE on a mount that does not propagate
  is_mount "$RUN/ns" || { mount --bind "$RUN/ns" "$RUN/ns"; mount --make-private "$RUN/ns"; }
  is_mount "$RUN/ns/$n.mnt" && return 0
  touch "$RUN/ns/$n.uts" "$RUN/ns/$n.mnt" "$RUN/ns/$n.time"
  for p in $SHARE; do
    [ -d "$p" ] && hidden_by_node "$p" || continue
    mkdir -p "$RUN/hold/$n.$i"; held="$held $p=$RUN/hold/$n.$i"; i=$((i + 1))
  done
  # A time namespace whose clock of the time since boot starts now: slurmd reports the
  # node's boot time, and slurmctld tells a rebooted node (its jobs gone) from one that
  # only missed some pings.
  # Inside the node's new mount namespace (copies of the host's mounts, private from now on):
  # hold the shared paths that the node's own /tmp would hide; drop the copies of mounts that
  # would pin other namespaces (the netns files, our own anchors) or another program's file
  # systems (chroots under /tmp or /var/tmp); then the node's own /tmp, /dev/shm and spool,
  # the held paths back in place, the cluster's /etc/hosts and /etc/slurm.
  nsenter --net="/run/netns/$(netns "$n")" \
    unshare --uts="$RUN/ns/$n.uts" --mount="$RUN/ns/$n.mnt" --propagation private \
      --time="$RUN/ns/$n.time" --boottime "-$(cut -d. -f1 /proc/uptime)" \
    sh -ec '
      node=$1 run=$2 etc=$3 hosts=$4 held=$5 share=$6
      hostname "$node"
      for pair in $held; do mount --rbind "${pair%%=*}" "${pair#*=}"; done
      findmnt -rn -o TARGET | grep -E "^(/tmp/|/var/tmp/|/run/netns|$run/ns)" | sort -r \
        | while read -r m; do
            for p in $share; do case $m in "$p"|"$p"/*) continue 2 ;; esac; done
            umount -l "$m" 2>/dev/null || true
          done
      mount -t tmpfs -o mode=1777,size=1g tmpfs /tmp
      mount -t tmpfs -o mode=1777,size=256m tmpfs /dev/shm
      mount -t tmpfs -o mode=0755,size=256m tmpfs /var/spool/slurmd
      for pair in $held; do mkdir -p "${pair%%=*}"; mount --move "${pair#*=}" "${pair%%=*}"; done
      mount --bind "$hosts" /etc/hosts
      mount --bind "$etc" /etc/slurm
    ' sh "$n" "$RUN" "$ETC" "$MN/etc/hosts" "$held" "$SHARE" 9>&-
}

ns_down() {  # the node's UTS and mount namespaces go (their tmpfs with them)
  local f
  for f in "$RUN/ns/$1.mnt" "$RUN/ns/$1.uts" "$RUN/ns/$1.time"; do
    umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
    rm -f "$f"
  done
  rm -rf "$RUN/hold/$1".*
}

on() {  # on NODE CMD...: in the node's network, UTS and mount namespaces
  local n=$1; shift
  known_node "$n"
  [ -e "$RUN/ns/$n.mnt" ] || die "$n has no mount namespace (reboot-node $n)"
  # not `ip netns exec`: it remounts /sys for the netns, which hides /sys/fs/cgroup
  nsenter --net="/run/netns/$(netns "$n")" --uts="$RUN/ns/$n.uts" --mount="$RUN/ns/$n.mnt" \
    --time="$RUN/ns/$n.time" -- "$@"
}

slurmd_up() {  # slurmd inside the node; it takes its NodeName from the node's hostname
  local n=$1 pidf=$RUN/slurmd-$1.pid
  alive slurmd "$pidf" && return 0
  rm -f "$pidf"
  on "$n" env -u SLURM_CONF /usr/sbin/slurmd 9>&-
  await 10 alive slurmd "$pidf" || die "slurmd on $n did not start ($LOGS/slurmd-$n.log)"
}

cgroups_down() {  # a crashed node leaves its (empty) cgroup v1 dirs behind; a boot has none
  local d
  for d in /sys/fs/cgroup/*/slurm_"$1"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

kill_node() {  # SIGKILL every process in the node's network namespace, by pid
  local n=$1 pids
  pids=$(ip netns pids "$(netns "$n")" 2>/dev/null | tr '\n' ' ')
  rm -f "$RUN/slurmd-$n.pid"
  [ -n "${pids// /}" ] || return 0
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  await 5 sh -c "[ -z \"\$(ip netns pids $(netns "$n") 2>/dev/null)\" ]" || true
  say "$n: killed $pids"
}

reboot_node() {  # a crash, two seconds of darkness, a boot: slurmctld sees the new boot
  local n=$1 booted was  # time, fails what it thought ran there, and keeps the node DOWN
  was=$(node_state "$n") # until an admin resumes it (ReturnToService=1): this does, once the
  # node has registered; a node that ran no job (Slurm already failed them, e.g. from its
  # silence) may come back idle: nothing of Slurm's to await then
  [ -n "$(squeue -h -w "$n" 2>/dev/null)" ] || was=""
  kill_node "$n"
  cgroups_down "$n"
  ns_down "$n"
  # Slurm compares whole seconds: the boot time it computes (now - uptime, both truncated)
  # must come after the last answer of the node before the crash
  sleep 2
  ns_up "$n"
  ip link set "$(veth "$n")" up
  booted=$(date +%s)
  slurmd_up "$n"
  await 20 registered_since "$n" "$booted" || die "$n did not register after its reboot"
  case $was in
    down*|drain*|fail*|"") ;;
    *) await 5 sh -c "sinfo -h -n $n -o %T | grep -q '^down'" \
         || die "slurmctld did not see $n reboot (state: $(node_state "$n"))" ;;
  esac
  case $(node_state "$n") in down*|drain*) scontrol update NodeName="$n" State=RESUME ;; esac
  await 15 sh -c "sinfo -h -n $n -o %T | grep -qxE 'idle|mixed|allocated'" \
    || die "$n is not back after its reboot (state: $(node_state "$n"))"
}

registered_since() {  # registered_since NODE EPOCH: slurmctld heard the slurmd started then
  local started
  started=$(scontrol show node "$1" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
  [ -n "$started" ] && [ "$started" != None ] && [ "$(date -d "$started" +%s)" -ge "$2" ]
}

node_state() { sinfo -h -n "$1" -o %T 2>/dev/null | head -1; }

wait_idle() {  # every node idle (or running jobs); a DOWN one that answers is resumed
  local n st
  for n in $(node_names); do
    await 60 sh -c "st=\$(sinfo -h -n $n -o %T 2>/dev/null | head -1)
      case \$st in idle|mixed|allocated|completing) exit 0 ;;
        down*|drain*|fail*) scontrol update NodeName=$n State=RESUME >/dev/null 2>&1 ;; esac
      exit 1" || die "$n is not up (state: $(node_state "$n")); see $LOGS/slurmd-$n.log"
  done
}

db_ok() { mariadb --protocol=tcp -h127.0.0.1 -P3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; }
dbd_answers() { sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }

up() {
  local t0 n
  t0=$(date +%s%N)
  [ "$(id -u)" = 0 ] || die "must run as root"
  lock; install_packages; configure
  if [ "$CHANGED" = 1 ] && alive slurmctld "$RUN/slurmctld.pid"; then
    # another proctrack plugin or node count: nothing running survives it (a reboot of
    # every node); slurmctld keeps its state, and job ids go on from where they were
    say "configuration changed: restarting the cluster"
    stop_daemons slurmctld:"$RUN/slurmctld.pid"
    for n in $(ls "$RUN/ns" 2>/dev/null | sed -n 's/\.mnt$//p'); do
      kill_node "$n"; cgroups_down "$n"; ns_down "$n"
    done
  fi
  munge_up; net_up
  for n in $(node_names); do ns_up "$n"; done
  db_ok || die "MariaDB at 127.0.0.1:3306 does not let root in (slurmdbd needs it)"
  if [ "$DBD_CHANGED" = 1 ]; then stop_daemons slurmdbd:"$RUN/slurmdbd.pid"; fi
  if ! alive slurmdbd "$RUN/slurmdbd.pid"; then
    rm -f "$RUN/slurmdbd.pid"; /usr/sbin/slurmdbd 9>&-
    await 10 alive slurmdbd "$RUN/slurmdbd.pid" || die "slurmdbd did not start ($LOGS/slurmdbd.log)"
    await 30 dbd_answers || die "slurmdbd does not answer ($LOGS/slurmdbd.log)"
    [ -n "$(sacctmgr -n -P show cluster mn format=cluster 2>/dev/null)" ] \
      || { sacctmgr -i add cluster mn >/dev/null; say "registered cluster mn"; }
    say "started slurmdbd (pid $(cat "$RUN/slurmdbd.pid"))"
  fi
  if ! alive slurmctld "$RUN/slurmctld.pid"; then
    rm -f "$RUN/slurmctld.pid"; /usr/sbin/slurmctld 9>&-
    await 10 alive slurmctld "$RUN/slurmctld.pid" || die "slurmctld did not start ($LOGS/slurmctld.log)"
    await 20 scontrol ping >/dev/null 2>&1 || true
    say "started slurmctld (pid $(cat "$RUN/slurmctld.pid"))"
  fi
  for n in $(node_names); do ip link set "$(veth "$n")" up; slurmd_up "$n"; done
  wait_idle
  say "up in $(( ($(date +%s%N) - t0) / 1000000 )) ms: node[1-$NODES], proctrack/$PROCTRACK; $(env_line)"
}

down() {
  local n t0
  t0=$(date +%s%N)
  lock
  # the nodes are switched off (what runs there dies at once, as in a power cut); the
  # login node's daemons stop cleanly, side by side (slurmctld saves its state)
  for n in $(ls /run/netns 2>/dev/null | sed -n 's/^slm-mn-//p'); do kill_node "$n"; done
  stop_daemons slurmctld:"$RUN/slurmctld.pid" slurmdbd:"$RUN/slurmdbd.pid" \
    munged:"$RUN/munge/munged.pid"
  for n in $(ls "$RUN/ns" 2>/dev/null | sed -n 's/\.mnt$//p'); do ns_down "$n"; cgroups_down "$n"; done
  if is_mount "$RUN/ns"; then umount "$RUN/ns" 2>/dev/null || umount -l "$RUN/ns"; fi
  for n in $(ls /run/netns 2>/dev/null | grep '^slm-mn-' || true); do ip netns del "$n"; done
  ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link del "$BRIDGE"
  # /run/netns is ip's own mount: it goes when the last namespace (ours or anybody's) has
  if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    ! is_mount /run/netns || umount /run/netns; rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$RUN"
  if [ "${1:-}" = --purge ]; then
    mariadb --protocol=tcp -h127.0.0.1 -P3306 -uroot -e "DROP DATABASE IF EXISTS $DB" || true
    rm -rf "$STATE" "$LOGS" "$MN/etc"
    say "purged state, logs, configuration and database $DB"
  fi
  say "down in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

status() {
  local d n
  for d in munged:"$RUN/munge/munged.pid" slurmdbd:"$RUN/slurmdbd.pid" slurmctld:"$RUN/slurmctld.pid"; do
    if alive "${d%%:*}" "${d#*:}"; then echo "${d%%:*}: pid $(cat "${d#*:}")"
    else echo "${d%%:*}: not running"; fi
  done
  for n in $(ls /run/netns 2>/dev/null | sed -n 's/^slm-mn-//p'); do
    echo "$n: link $(cat "/sys/class/net/$(veth "$n")/operstate" 2>/dev/null || echo none)," \
      "slurmd $(alive slurmd "$RUN/slurmd-$n.pid" && cat "$RUN/slurmd-$n.pid" || echo none)," \
      "processes: $(ip netns pids "$(netns "$n")" 2>/dev/null | wc -l)"
  done
  grep -h '^ProctrackType' "$CONF" 2>/dev/null || true
  sinfo 2>/dev/null || true
}

env_line() { echo "export SLURM_CONF=$CONF"; }

cmd=${1:-}; [ $# -eq 0 ] || shift
case $cmd in
  up) up ;;
  down) down "${1:-}" ;;
  status) status ;;
  env) env_line ;;
  on) [ $# -ge 2 ] || die "usage: on NODE CMD..."; on "$@" ;;
  kill-node) known_node "${1:?NODE}"; kill_node "$1" ;;
  partition) known_node "${1:?NODE}"; ip link set "$(veth "$1")" down; say "$1: link down" ;;
  heal)
    known_node "${1:?NODE}"; ip link set "$(veth "$1")" up; say "$1: link up"
    # slurmctld asks the nodes to register every ~100 s: then a DOWN node that answers is
    # back, and a job it ended that still runs there is killed. --now: the node's slurmd
    # restarts (its jobs' processes stay, as they do through any slurmd restart) and so
    # registers at once, and once it is back, a reconfigure has it register again with its
    # jobs (a node still DOWN when it registers is taken back, its jobs not looked at)
    if [ "${2:-}" = --now ]; then
      lock
      stop_daemons slurmd:"$RUN/slurmd-$1.pid"; slurmd_up "$1"
      await 20 sh -c "sinfo -h -n $1 -o %T | grep -qxE 'idle|mixed|allocated|completing'" \
        || die "$1 is not back (state: $(node_state "$1"))"
      scontrol reconfigure; say "$1 registered again"
    fi ;;
  reboot-node) known_node "${1:?NODE}"; lock; reboot_node "$1"; say "$1: rebooted" ;;
  *) sed -n '2,/^set -eu/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
