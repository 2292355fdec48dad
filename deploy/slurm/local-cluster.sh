#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, from Debian's packages (slurm-wlm 22.05 + munge),
# for tests and for trying the job scripts. Needs root (the daemons run as root, no systemd needed).
#
#   deploy/slurm/local-cluster.sh start     install the packages if missing, write slurm.conf for
#                                           this host and its CPUs, start munged, slurmctld, slurmd,
#                                           wait until the node is idle; prints the SLURM_CONF to export
#   deploy/slurm/local-cluster.sh stop      stop the daemons started by `start` (by their PID files)
#   deploy/slurm/local-cluster.sh status    daemons' PIDs and `sinfo`
#   deploy/slurm/local-cluster.sh env       prints `export SLURM_CONF=...` (eval "$(... env)")
#
# Everything (config, munge key and socket, state, spool, logs) lives in $INFLUENCE_SLURM_DIR
# [default /tmp/influencesharp-slurm]; nothing under /etc is changed. The munge socket is private
# to this directory so a system munged, if any, is left alone. Ports: $INFLUENCE_SLURM_PORT and
# the next one [default 6817, 6818]. Config choices for a container: proctrack/linuxproc and
# task/none (no cgroups), select/cons_tres with CR_CPU (one CPU per task, so several array tasks
# run at once), no accounting daemon (finished jobs stay visible to `scontrol show job` for
# MinJobAge=600 s).
set -euo pipefail
dir=${INFLUENCE_SLURM_DIR:-/tmp/influencesharp-slurm}
port=${INFLUENCE_SLURM_PORT:-6817}
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

log() { echo "local-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "slurm-wlm/munge are not installed and installing them needs root"
  log "installing slurm-wlm and munge (apt-get)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge) \
    >"${TMPDIR:-/tmp}/influencesharp-slurm-apt.log" 2>&1 \
    || { cat "${TMPDIR:-/tmp}/influencesharp-slurm-apt.log" >&2; die "apt-get install slurm-wlm munge failed"; }
}

# A PID file's process runs (a zombie, exited but not yet reaped, does not count).
pid_alive() { [ -f "$1" ] && running "$(cat "$1")"; }
running() { kill -0 "$1" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

write_conf() {
  local host node
  host=$(hostname -s)
  # The node line as slurmd sees this machine (CPUs, sockets, cores, threads, memory).
  node=$(slurmd -C | head -n1)
  [[ $node == NodeName=* ]] || die "slurmd -C printed no node line: $node"
  cat >"$conf" <<EOF
# Written by deploy/slurm/local-cluster.sh for $host: a single-node test cluster.
ClusterName=influencesharp
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Schedule CPUs, not whole nodes: several 1-CPU array tasks run at once.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
MaxArraySize=10001
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
  mkdir -p "$dir/munge"
  chmod 0700 "$dir/munge"
  if [ ! -s "$dir/munge/munge.key" ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile="$dir/munge/munge.key" --force >/dev/null
    else dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; fi
  fi
  chmod 0400 "$dir/munge/munge.key"
  if pid_alive "$dir/munge/munged.pid"; then return; fi
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    || { cat "$dir/log/munged.log" >&2 2>/dev/null; die "munged did not start"; }
  for _ in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && return; sleep 0.1; done
  die "munged's socket did not appear (see $dir/log/munged.log)"
}

start() {
  install_packages
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  start_munge
  write_conf
  if ! pid_alive "$dir/slurmctld.pid"; then
    # -i: ignore state left by an earlier cluster in this directory that cannot be recovered.
    slurmctld -f "$conf" -i || die "slurmctld did not start (see $dir/log/slurmctld.log)"
  fi
  if ! pid_alive "$dir/slurmd.pid"; then
    slurmd -f "$conf" || die "slurmd did not start (see $dir/log/slurmd.log)"
  fi
  local host state=""
  host=$(hostname -s)
  for i in $(seq 120); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) log "node $host is $state; export SLURM_CONF=$conf"; return 0 ;;
      down*|drain*|fail*)
        # A node left down by an earlier cluster's state: return it to service once.
        [ "$i" -gt 5 ] && scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  log "node did not become idle (state '$state'); last log lines:"
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  return 1
}

stop_pidfile() {
  local name=$1 file=$2
  if pid_alive "$file"; then
    local pid; pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    running "$pid" && kill -9 "$pid" 2>/dev/null || true
    log "stopped $name ($pid)"
  fi
  rm -f "$file"
}

stop() {
  # Cancel what is still queued or running so that no job step outlives the daemons.
  [ -f "$conf" ] && pid_alive "$dir/slurmctld.pid" && scancel --full --quiet --user=root 2>/dev/null || true
  stop_pidfile slurmd "$dir/slurmd.pid"
  stop_pidfile slurmctld "$dir/slurmctld.pid"
  stop_pidfile munged "$dir/munge/munged.pid"
}

status() {
  for f in munge/munged.pid slurmctld.pid slurmd.pid; do
    if pid_alive "$dir/$f"; then echo "$(basename "$f" .pid): running ($(cat "$dir/$f"))"; else echo "$(basename "$f" .pid): not running"; fi
  done
  [ -f "$conf" ] && sinfo 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
