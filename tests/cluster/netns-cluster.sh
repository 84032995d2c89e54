#!/usr/bin/env bash
# netns-cluster.sh - an emulated N-host cluster on this one machine, for vinemake's tests/bench.
#
# Why this shape: every emulated host is a network namespace <P><i> whose only interface
# (eth0) is one end of a veth pair; the other end is a port of a bridge that lives in its own
# namespace <P>-sw, so bridged frames never meet the root namespace's firewall.  Every link is
# shaped with a tbf qdisc at BOTH ends (host eth0 egress = upload, switch port egress =
# download), which gives full-duplex per-host rate limits, like a NIC on a real switch.
# The root namespace (where a manager usually runs) joins through veth <P>-root = <S>.1.
#
# Addresses: <S>.1 root, <S>.2 optional manager namespace <P>-mgr, <S>.(10+i) host i, where
# <S> is a private /24 (default 10.233.0).  No namespace gets a default route and nothing is
# forwarded: traffic can only go between the addresses created here.
#
# Each host also gets its own /etc/hosts (every host's name resolves) and /etc/machine-id.
#
# Ownership: every namespace made here carries the alias "vmcluster:<P>" on its lo, the root
# veth carries it too, and `down` deletes only marked objects (after killing what runs inside),
# so a test's finalizer can always call `down` safely, even after a half-finished `up`.
#
# Needs root, iproute2 (ip, tc), util-linux (flock, unshare).
set -Eeuo pipefail
export LC_ALL=C

ME=${0##*/}
P=${VMCLUSTER_PREFIX:-vmt}
STATE_DIR=${VMCLUSTER_STATE_DIR:-/run/vmcluster}

die() { echo "$ME: error: $*" >&2; exit 1; }

usage() {
  cat <<EOF
usage: $ME [--prefix P] COMMAND [ARGS]

  up N [--rate R] [--root-rate R|off] [--manager-ns] [--subnet A.B.C] [--mtu M]
        create N hosts (1..200); rates in tc units (100mbit, 1gbit) or 'none' (default 200mbit)
  down  kill every process inside the namespaces, then delete everything this prefix made
  exec I CMD...   run CMD in host I (0..N-1, mgr) with hostname = namespace name
  link I up|down  bring host I's interface up or down (cut it off the network)
  addr I          address of host I (0..N-1, mgr, root)
  hosts           lines "NAME NETNS ADDRESS"
  stats           lines "NAME UP_BYTES DOWN_BYTES" from the link counters of every endpoint
  leftovers       list objects of this prefix that still exist (exit 1 if any)
EOF
}

# ------------------------------------------------------------------ names and state
names() {
  [[ $P =~ ^[a-z]([a-z0-9]{0,8}[a-z])?$ ]] ||
    die "bad prefix '$P' (1-10 characters a-z0-9, first and last a letter)"
  MARK="vmcluster:$P"
  SW="$P-sw"
  MGR="$P-mgr"
  ROOTDEV="$P-root"
  STATE="$STATE_DIR/$P.conf"
}

load_state() {
  [ -r "$STATE" ] || die "cluster '$P' is not up"
  # shellcheck disable=SC1090
  . "$STATE"
}

is_ours() { ip -n "$1" link show dev lo 2>/dev/null | grep -q "alias $MARK\$"; }
root_is_ours() { ip link show dev "$ROOTDEV" 2>/dev/null | grep -q "alias $MARK\$"; }

host_ns() {
  case $1 in
    mgr) echo "$MGR" ;;
    [0-9]*) [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -lt "$N" ] || die "no host '$1' (0..$((N - 1)), mgr)"
            echo "$P$1" ;;
    *) die "no host '$1' (0..$((N - 1)), mgr)" ;;
  esac
}

owned_namespaces() { # every marked namespace of this prefix
  local f n
  for f in /run/netns/"$P"*; do
    [ -e "$f" ] || continue
    n=${f##*/}
    [[ $n =~ ^$P([0-9]+|-sw|-mgr)$ ]] && is_ours "$n" && echo "$n"
  done
  return 0
}

to_bits() { # tc rate -> bits per second, 0 for none
  local r=${1,,}
  [ "$r" = none ] && { echo 0; return; }
  awk -v r="$r" 'BEGIN {
    if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
    v = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
    f["bit"] = 1; f["kbit"] = 1e3; f["mbit"] = 1e6; f["gbit"] = 1e9
    f["bps"] = 8; f["kbps"] = 8e3; f["mbps"] = 8e6; f["gbps"] = 8e9
    if (!(u in f) || v * f[u] < 8000) exit 1
    printf "%.0f\n", v * f[u] }' || die "bad rate '$1' (examples: 20mbit, 1gbit, none)"
}

# ------------------------------------------------------------------ up
shape() { # ns-or-empty dev bits: tbf with a bucket of max(64 KiB, 2 ms) and a 5 ms queue
  local ns=$1 dev=$2 bits=$3 nsarg=()
  [ -n "$ns" ] && nsarg=(-n "$ns")
  if [ "$bits" = 0 ]; then tc "${nsarg[@]}" qdisc del dev "$dev" root 2>/dev/null || true; return; fi
  local per_ms=$((bits / 8000)) burst=65536
  [ $((2 * per_ms)) -gt $burst ] && burst=$((2 * per_ms))
  tc "${nsarg[@]}" qdisc replace dev "$dev" root tbf rate "${bits}bit" burst "$burst" \
    limit $((burst + 5 * per_ms))
}

new_ns() {
  ip netns add "$1"
  ip -n "$1" link set dev lo alias "$MARK"
  ip -n "$1" link set dev lo up
  # IPv4 only: no IPv6 autoconfiguration chatter in the byte counters
  ip netns exec "$1" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6' 2>/dev/null || true
}

plug() { # ns port addr: veth from the switch to a namespace (eth0) or to the root (ns "")
  local ns=$1 port=$2 addr=$3
  if [ -n "$ns" ]; then
    ip -n "$SW" link add "$port" mtu "$MTU" type veth peer name eth0 netns "$ns" mtu "$MTU"
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set dev eth0 up
  else
    ip link add "$ROOTDEV" mtu "$MTU" type veth peer name "$port" netns "$SW" mtu "$MTU"
    ip link set dev "$ROOTDEV" alias "$MARK"
    echo 1 > "/proc/sys/net/ipv6/conf/$ROOTDEV/disable_ipv6" 2>/dev/null || true
    ip addr add "$addr/24" dev "$ROOTDEV"
    ip link set dev "$ROOTDEV" up
  fi
  ip -n "$SW" link set dev "$port" master br0 up
}

etc_files() { # ns: its own /etc/hosts and /etc/machine-id (`ip netns exec` bind-mounts them)
  local ns=$1 i
  mkdir -p "/etc/netns/$ns"
  {
    echo "127.0.0.1 localhost"
    [ "$root_bits" != off ] && echo "$subnet.1 $ROOTDEV"
    [ "$mgr" = 1 ] && echo "$subnet.2 $MGR"
    for ((i = 0; i < N; i++)); do echo "$subnet.$((10 + i)) $P$i"; done
  } > "/etc/netns/$ns/hosts"
  # a distinct machine id per host, so nothing mistakes two emulated hosts for one machine
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "/etc/netns/$ns/machine-id"
  echo >> "/etc/netns/$ns/machine-id"
}

cmd_up() {
  local n="" rate=200mbit root_rate="" mgr=0 subnet=10.233.0 mtu=1500
  while [ $# -gt 0 ]; do
    case $1 in
      --rate) rate=$2; shift 2 ;;
      --root-rate) root_rate=$2; shift 2 ;;
      --manager-ns) mgr=1; shift ;;
      --subnet) subnet=$2; shift 2 ;;
      --mtu) mtu=$2; shift 2 ;;
      -*) die "up: unknown option $1" ;;
      *) [ -z "$n" ] || die "up: extra argument $1"; n=$1; shift ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: N must be 1..200"
  [[ $subnet =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && [ "${BASH_REMATCH[1]}" -le 255 ] &&
    [ "${BASH_REMATCH[2]}" -le 255 ] || die "up: --subnet must be 10.X.Y (a private /24)"
  [[ $mtu =~ ^[0-9]+$ ]] && [ "$mtu" -ge 576 ] || die "up: bad --mtu '$mtu'"
  [ "$(id -u)" = 0 ] || die "must run as root"
  local bits root_bits
  bits=$(to_bits "$rate")
  case ${root_rate,,} in "") root_bits=$bits ;; off) root_bits=off ;; *) root_bits=$(to_bits "$root_rate") ;; esac

  [ -e "$STATE" ] && die "cluster '$P' is already up (run down first)"
  [ -z "$(owned_namespaces)" ] && ! root_is_ours || die "leftovers of cluster '$P' exist (run down first)"
  local ns
  for ns in "$SW" "$MGR" $(seq -f "$P%g" 0 $((n - 1))); do
    [ ! -e "/run/netns/$ns" ] || die "namespace $ns exists and is not ours; nothing was changed"
  done
  ! ip link show dev "$ROOTDEV" >/dev/null 2>&1 || die "interface $ROOTDEV exists and is not ours"
  if [ "$root_bits" != off ] && [ -n "$(ip -4 route show "$subnet.0/24")" ]; then
    die "subnet $subnet.0/24 is already in use in the root namespace; nothing was changed"
  fi

  # Every emulated host's received packets wait in this one machine's per-CPU input queues:
  # at the default 1000 they overflowed when eight hosts received at once and the two cores'
  # softirq fell behind (hundreds of packets dropped per run past their links' shapers, which
  # a host with its own CPUs would not lose). Raised, never lowered; machine-wide.
  local backlog
  backlog=$(sysctl -n net.core.netdev_max_backlog)
  [ "$backlog" -ge 10000 ] || sysctl -qw net.core.netdev_max_backlog=10000

  # a half-built cluster is removed again, so a failed `up` never leaves anything behind
  trap 'echo "$ME: up failed, removing what was made" >&2; teardown >/dev/null 2>&1 || true' ERR
  N=$n MTU=$mtu
  mkdir -p "$STATE_DIR"
  new_ns "$SW"
  ip -n "$SW" link add br0 type bridge stp_state 0 forward_delay 0
  ip -n "$SW" link set dev br0 up
  local i
  for ((i = 0; i < n; i++)); do
    new_ns "$P$i"
    plug "$P$i" "h$i" "$subnet.$((10 + i))"
    shape "$P$i" eth0 "$bits"
    shape "$SW" "h$i" "$bits"
    etc_files "$P$i"
  done
  if [ "$mgr" = 1 ]; then
    new_ns "$MGR"; plug "$MGR" hmgr "$subnet.2"
    shape "$MGR" eth0 "$bits"; shape "$SW" hmgr "$bits"
    etc_files "$MGR"
  fi
  if [ "$root_bits" != off ]; then
    plug "" hroot "$subnet.1"
    shape "" "$ROOTDEV" "$root_bits"; shape "$SW" hroot "$root_bits"
  fi
  printf 'N=%s\nSUBNET=%s\nMGR_NS=%s\nROOT=%s\nRATE_BITS=%s\nMTU=%s\nOWNER_PID=%s\n' \
    "$n" "$subnet" "$mgr" "$([ "$root_bits" = off ] && echo 0 || echo 1)" "$bits" "$mtu" \
    "${VMCLUSTER_OWNER_PID:-$PPID}" > "$STATE"
  trap - ERR
  echo "cluster '$P': $n hosts on $subnet.0/24 at $rate each way"
}

# ------------------------------------------------------------------ down
kill_inside() { # ns: TERM, short grace, then KILL everything still in it
  local pids tries=0
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  while [ $tries -lt 20 ]; do
    pids=$(ip netns pids "$1" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    sleep 0.1; tries=$((tries + 1))
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

teardown() {
  local ns nss
  nss=$(owned_namespaces)
  for ns in $nss; do kill_inside "$ns"; done
  root_is_ours && ip link del dev "$ROOTDEV"
  for ns in $nss; do ip netns del "$ns"; done
  for ns in $nss; do rm -rf "/etc/netns/$ns"; done
  rmdir /etc/netns 2>/dev/null || true
  rm -f "$STATE"
  rmdir "$STATE_DIR" 2>/dev/null || true
  # namespace destruction is asynchronous: wait until the root end of the link is gone too
  local tries=0
  while ip link show dev "$ROOTDEV" >/dev/null 2>&1 && [ $tries -lt 50 ]; do
    sleep 0.1; tries=$((tries + 1))
  done
  echo "cluster '$P': removed ${nss//$'\n'/ }"
}

cmd_leftovers() {
  local found f
  found=$(owned_namespaces)
  root_is_ours && found+=" $ROOTDEV"
  [ -e "$STATE" ] && found+=" $STATE"
  for f in /etc/netns/"$P"*; do
    [[ ${f##*/} =~ ^$P([0-9]+|-mgr)$ ]] && found+=" $f"
  done
  found=$(echo $found)
  [ -z "$found" ] && return 0
  echo "$found"
  return 1
}

# ------------------------------------------------------------------ use
cmd_exec() {
  [ $# -ge 2 ] || die "exec: usage: exec I CMD..."
  load_state
  local ns; ns=$(host_ns "$1"); shift
  is_ours "$ns" || die "namespace $ns is gone"
  # a private UTS namespace, so each emulated host reports its own hostname
  exec ip netns exec "$ns" unshare --uts -- sh -c 'hostname "$0" 2>/dev/null; exec "$@"' "$ns" "$@"
}

cmd_link() {
  [ $# -eq 2 ] && [[ $2 =~ ^(up|down)$ ]] || die "link: usage: link I up|down"
  load_state
  local ns; ns=$(host_ns "$1")
  ip -n "$ns" link set dev eth0 "$2"
}

addr_of() {
  case $1 in
    root) echo "$SUBNET.1" ;;
    mgr) echo "$SUBNET.2" ;;
    *) host_ns "$1" >/dev/null; echo "$SUBNET.$((10 + $1))" ;;
  esac
}

cmd_hosts() {
  load_state
  [ "$ROOT" = 1 ] && echo "root - $SUBNET.1"
  [ "$MGR_NS" = 1 ] && echo "mgr $MGR $SUBNET.2"
  local i
  for ((i = 0; i < N; i++)); do echo "$i $P$i $SUBNET.$((10 + i))"; done
}

counters() { # ns-or-empty dev -> "tx rx": bytes this end sent and received
  local nsarg=()
  [ -n "$1" ] && nsarg=(-n "$1")
  ip "${nsarg[@]}" -s -o link show dev "$2" | awk '{
    for (i = 1; i <= NF; i++) {
      if ($i == "RX:" && rx == "") { for (j = i; j <= NF && $j !~ /^[0-9]+$/; j++) ; rx = $j }
      if ($i == "TX:" && tx == "") { for (j = i; j <= NF && $j !~ /^[0-9]+$/; j++) ; tx = $j }
    }
    print tx, rx }'
}

cmd_stats() {
  load_state
  [ "$ROOT" = 1 ] && echo "root $(counters "" "$ROOTDEV")"
  [ "$MGR_NS" = 1 ] && echo "mgr $(counters "$MGR" eth0)"
  local i
  for ((i = 0; i < N; i++)); do echo "$i $(counters "$P$i" eth0)"; done
}

# ------------------------------------------------------------------ main
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; P=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
names
cmd=$1; shift
# clusters of different prefixes share STATE_DIR (removed when the last one goes): one up/down
# at a time on this machine, so a teardown never removes it under another cluster's `up`
if [ "$cmd" = up ] || [ "$cmd" = down ]; then
  exec 8>>/run/vmcluster.script.lock
  flock -w 120 8 || die "another netns-cluster.sh up/down has held /run/vmcluster.script.lock for 120 s"
fi
case $cmd in
  up) cmd_up "$@" ;;
  down) [ "$(id -u)" = 0 ] || die "must run as root"; teardown ;;
  exec) cmd_exec "$@" ;;
  link) cmd_link "$@" ;;
  addr) [ $# -eq 1 ] || die "addr: usage: addr I"; load_state; addr_of "$1" ;;
  hosts) cmd_hosts ;;
  stats) cmd_stats ;;
  leftovers) cmd_leftovers ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
