#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run all of it.
# Usage: bash tests/run.sh [pytest args...]   (needs root for apt-get, SLURM and ip netns)
# Inside an activated virtual environment it installs there; outside one it makes .venv here
# first (Debian's Python refuses pip installs outside a venv: externally-managed-environment).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# A fresh CI machine fetches from mirrors and registries that fail now and then (a mirror
# mid-sync, a reset connection), and may still be running its own apt at boot: each network
# step is tried three times, and apt waits for the dpkg lock instead of failing on it.
retry() {
  local n
  for n in 1 2 3; do
    "$@" && return 0
    ((n < 3)) && { echo "tests/run.sh: failed (attempt $n of 3), retrying: $*" >&2; sleep $((n * 10)); }
  done
  return 1
}
APT=(apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)

# System packages: vim (Vim syntax tests), iproute2 (emulated cluster), node/npm (VS Code
# grammar tests). Only what is missing is installed, so a developer's rerun is quick.
need_apt=()
command -v vim  >/dev/null || need_apt+=(vim)
command -v ip   >/dev/null || need_apt+=(iproute2)
command -v tc   >/dev/null || need_apt+=(iproute2)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm  >/dev/null || need_apt+=(npm)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v chromium >/dev/null || need_apt+=(chromium)  # the report and status page tests
command -v tmux >/dev/null || need_apt+=(tmux)  # terminal tests read a real screen
command -v cc   >/dev/null || need_apt+=(gcc)  # the docs' C examples run for real (test_workflows_run)
[ -x /usr/bin/convert ] || need_apt+=(imagemagick)  # a documented example names /usr/bin/convert
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  retry "${APT[@]}" update -qq
  retry "${APT[@]}" install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python3 ]; then
    log "python3 -m venv .venv (no virtual environment is active)"
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      export DEBIAN_FRONTEND=noninteractive
      retry "${APT[@]}" update -qq
      retry "${APT[@]}" install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv .venv
    fi
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

log "pip install -e .[test] (into $VIRTUAL_ENV)"
retry python3 -m pip install -q --disable-pip-version-check -e '.[test]'

if [ -f tests/editor/package.json ]; then
  log "npm ci (VS Code grammar test runner)"
  retry npm ci --prefix tests/editor --no-audit --no-fund --loglevel=error
  # vsce packages the VS Code extension; the packaging test runs when VSCE names it.
  vsce_dir=${VSCE_DIR:-/tmp/vinemake-vsce}
  if [ ! -x "$vsce_dir/node_modules/.bin/vsce" ]; then
    retry npm install --prefix "$vsce_dir" --no-audit --no-fund --loglevel=error @vscode/vsce
  fi
  export VSCE="$vsce_dir/node_modules/.bin/vsce"
fi

# slurm-down.sh stops only what slurm-up.sh recorded (munged included), so it runs on every
# way out, also after a start that failed half-way.
cleanup() { bash tests/cluster/slurm-down.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
log "starting the test SLURM cluster"
if ! bash tests/cluster/slurm-up.sh; then
  if [ "${CI:-}" = true ]; then
    echo "tests/run.sh: the test SLURM cluster did not start (above); under CI that fails the run" >&2
    exit 1
  fi
  echo "" >&2
  echo "################################################################################" >&2
  echo "## tests/run.sh: SLURM did NOT start: the slurm and pbs tests will be SKIPPED  ##" >&2
  echo "################################################################################" >&2
fi

log "ruff"
python3 -m ruff check vinemake tests bench

log "vulture (dead code; reviewed exceptions in tests/vulture_allowlist.py)"
python3 -m vulture vinemake tests/vulture_allowlist.py --min-confidence 60

log "pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
