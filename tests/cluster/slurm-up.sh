#!/usr/bin/env bash
# slurm-up.sh - a real single-node SLURM on this machine for vinemake's `slurm` tests, no systemd.
#
# Installs slurmctld/slurmd/slurm-client/munge (+ slurm-wlm-torque for the PBS tests) when
# missing, writes /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd unless ours already
# run, and returns only once a probe batch job has really run. Idempotent; never prompts.
# Stop with slurm-down.sh, which kills only the pids this script recorded.
#
# Settings that matter (the defaults below are what the tests assume):
#   SchedulerParameters=batch_sched_delay=0  queued jobs start within ~1 s, not every 3 s
#   DefMemPerCPU                            a job without --mem does not claim the whole node
#   EnforcePartLimits=ALL                   an impossible request fails at sbatch, not pends
# Environment:
#   SLURM_UP_ROOT=/tmp/vinemake-slurm  spool, logs, pid files
#   SLURM_UP_CPUS=N                    advertise N CPUs (N > cores: more 1-cpu jobs at once,
#                                      for benchmarks of many short rules)
#   SLURM_UP_TORQUE=0                  skip the qsub/qstat/qdel wrappers
#   SLURM_UP_TIMEOUT=60                seconds to wait for the node and the probe job
set -euo pipefail
exec </dev/null
# The daemons started below outlive this script: they must not inherit a caller's descriptors,
# above all the lock of `flock /work/cluster.lock slurm-up.sh`, which munged would otherwise
# hold for its whole life (it did: every later user of the lock waited forever).
for fd in $(ls /proc/$$/fd); do
  case $fd in 0|1|2|255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
done

ROOT=${SLURM_UP_ROOT:-/tmp/vinemake-slurm}
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# written by vinemake tests/cluster/slurm-up.sh"

say() { echo "[slurm-up] $*"; }
die() { echo "[slurm-up] error: $*" >&2; exit 1; }
running() { # running PIDFILE NAME: the recorded pid is alive, not a zombie, and is NAME
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}
until_ok() { # until_ok SECONDS CMD...: retry every 0.2 s
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || return 1; sleep 0.2; done
}

[[ $(id -u) == 0 ]] || die "run as root (apt-get, munged and slurmd need it)"
mkdir -p "$ROOT"/{run,log,state,spool}
exec 8>"$ROOT/lock"
flock -w 300 8 || die "another slurm-up.sh is running"

# -- 1. packages
pkgs=()
for b in slurmctld slurmd sbatch munged; do command -v $b >/dev/null || { pkgs=(slurmctld slurmd slurm-client munge); break; }; done
[[ ${SLURM_UP_TORQUE:-1} == 1 ]] && ! command -v qsub >/dev/null && pkgs+=(slurm-wlm-torque)
if ((${#pkgs[@]})); then
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy=0
  # no init system here: stop the packages' maintainer scripts from trying to start daemons
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1; }
  # three tries (a mirror mid-sync, a reset connection), and the dpkg lock waited for (a fresh
  # machine may still run its own apt at boot)
  apt=(apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)
  : >"$ROOT/log/apt.log"
  for try in 1 2 3; do
    { "${apt[@]}" update -q && "${apt[@]}" install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${pkgs[@]}"; } >>"$ROOT/log/apt.log" 2>&1 && break
    ((try < 3)) || { ((policy)) && rm -f /usr/sbin/policy-rc.d; tail -5 "$ROOT/log/apt.log" >&2; die "apt-get failed"; }
    say "apt-get failed (attempt $try of 3), retrying"; sleep $((try * 10))
  done
  if ((policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi

# -- 2. munge (slurm's authentication)
munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_works; then
  [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge: /etc/munge/munge.key; chmod 600 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid 8>&- || die "munged did not start"
  until_ok 10 munge_works || die "munged does not answer"
  cp /run/munge/munged.pid "$ROOT/run/munged.pid"
  say "munged started"
fi

# -- 3. configuration
host=$(hostname -s)
hw=$(slurmd -C | head -1)
num() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=${SLURM_UP_CPUS:-$(num CPUs)}
mem=$(num RealMemory); ((mem > 4096)) && mem=$((mem - 1024)) || mem=$((mem * 9 / 10))
if [[ $cpus == "$(num CPUs)" ]]; then
  node="CPUs=$cpus Boards=$(num Boards) SocketsPerBoard=$(num SocketsPerBoard) CoresPerSocket=$(num CoresPerSocket) ThreadsPerCore=$(num ThreadsPerCore)"
  override=""
else
  node="CPUs=$cpus"; override="SlurmdParameters=config_overrides"   # trust CPUs over hardware
fi
conf=$(cat <<EOF
$MARK
ClusterName=vinemake
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmdPidFile=$ROOT/run/slurmd.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdLogFile=$ROOT/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem / cpus))
EnforcePartLimits=ALL
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
$override
NodeName=$host NodeAddr=127.0.0.1 $node RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
restart=0
if [[ ! -e $CONF ]] || ! cmp -s <(echo "$conf") "$CONF"; then
  [[ ! -e $CONF ]] || grep -qF "$MARK" "$CONF" || die "$CONF was not written by this script; move it away first"
  mkdir -p /etc/slurm; echo "$conf" >"$CONF"; restart=1
  say "wrote $CONF ($node RealMemory=$mem)"
fi
if [[ ${SLURM_UP_TORQUE:-1} == 1 ]] && [[ -d /etc/slurm/plugstack.conf.d ]]; then
  # PBS_JOBID and friends inside jobs submitted through the qsub wrapper
  spank=$(dpkg -L slurm-wlm-basic-plugins 2>/dev/null | grep '/spank_pbs.so$' | head -1 || true)
  [[ -z $spank ]] || echo "optional $spank" >/etc/slurm/plugstack.conf.d/vinemake-pbs.conf
fi
chown slurm: "$ROOT/state" "$ROOT/log" "$ROOT/run"

# -- 4. daemons
stop() { # stop PIDFILE NAME (ours only)
  running "$1" "$2" || return 0
  kill "$(cat "$1")"; until_ok 15 eval "! running $1 $2" || kill -9 "$(cat "$1")" 2>/dev/null || true
}
if ((restart)); then stop "$ROOT/run/slurmd.pid" slurmd; stop "$ROOT/run/slurmctld.pid" slurmctld; fi
if ! running "$ROOT/run/slurmctld.pid" slurmctld; then
  scontrol ping 2>/dev/null | grep -q 'is UP' && die "a slurmctld not started by this script is running"
  find "$ROOT/state" -mindepth 1 -delete        # clean start: no old jobs, ids from 1
  /usr/sbin/slurmctld -c -i 8>&- >>"$ROOT/log/slurmctld.out" 2>&1 || die "slurmctld: $(tail -3 "$ROOT/log/slurmctld.log")"
  until_ok 20 running "$ROOT/run/slurmctld.pid" slurmctld || die "slurmctld exited: $(tail -3 "$ROOT/log/slurmctld.log")"
  say "slurmctld started"
fi
until_ok 20 eval "scontrol ping | grep -q 'is UP'" || die "slurmctld does not answer"
if ! running "$ROOT/run/slurmd.pid" slurmd; then
  /usr/sbin/slurmd -N "$host" 8>&- >>"$ROOT/log/slurmd.out" 2>&1 || die "slurmd: $(tail -3 "$ROOT/log/slurmd.log")"
  until_ok 20 running "$ROOT/run/slurmd.pid" slurmd || die "slurmd exited: $(tail -3 "$ROOT/log/slurmd.log")"
  say "slurmd started"
fi

# -- 5. ready means a batch job really ran
node_ok() { [[ $(sinfo -h -n "$host" -o %t) =~ ^(idle|mix|alloc)$ ]]; }
until_ok "$TIMEOUT" node_ok || { scontrol show node "$host" >&2; die "node $host not ready after ${TIMEOUT}s"; }
out=$ROOT/log/probe.out; rm -f "$out"
job=$(sbatch 8>&- --parsable -J vinemake-probe -o "$out" -c1 --mem=16M --wrap 'echo probe-ok')
until_ok "$TIMEOUT" grep -q probe-ok "$out" || { scancel "$job"; die "probe job $job did not run: $(scontrol show job "$job" | grep -o 'JobState=[A-Z]*.*Reason=[^ ]*')"; }
say "ready: probe job $job ran on $host ($cpus CPUs, ${mem} MB)"
