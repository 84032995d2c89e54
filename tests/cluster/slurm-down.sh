#!/usr/bin/env bash
# slurm-down.sh - stop what slurm-up.sh started: cancel the jobs left, then stop the daemons
# whose pids it recorded (and only those; a munged it found running is left alone). Exits 0.
set -uo pipefail
exec </dev/null
ROOT=${SLURM_UP_ROOT:-/tmp/vinemake-slurm}

running() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]
}
stop() { # stop NAME
  local pf=$ROOT/run/$1.pid i
  if ! running "$pf" "$1"; then rm -f "$pf"; echo "[slurm-down] $1: not running"; return; fi
  kill "$(cat "$pf")"
  for i in $(seq 75); do running "$pf" "$1" || break; sleep 0.2; done
  running "$pf" "$1" && kill -9 "$(cat "$pf")" 2>/dev/null
  rm -f "$pf"; echo "[slurm-down] $1: stopped"
}

# Jobs first, while slurmd can still reap their processes (KillWait=5).
if running "$ROOT/run/slurmctld.pid" slurmctld; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [[ -n ${jobs// } ]]; then
    echo "[slurm-down] cancelling $jobs"
    # shellcheck disable=SC2086
    scancel $jobs
    for i in $(seq 75); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.2; done
  fi
fi
stop slurmd
stop slurmctld
stop munged
exit 0
