#!/usr/bin/env bash
# netns_hosts.sh: two "hosts" on this machine for MPI runs that cross a real network stack.
#
#   scripts/netns_hosts.sh up      create them (root; prints the mpiexec options to use); refuses
#                                  while another run has processes in them; a failure part-way
#                                  removes what was made
#   scripts/netns_hosts.sh down    remove them (the bridge sy-br0 and the namespaces sy-h1, sy-h2)
#   scripts/netns_hosts.sh check   exit 0 when they can be created here (root, ip netns allowed)
#   scripts/netns_hosts.sh HOST CMD...   Open MPI's rsh agent: runs CMD inside HOST (10.77.0.1 or .2)
#
# Network namespaces sy-h1 and sy-h2 each get one end of a veth pair whose other end is on the
# bridge sy-br0 in the root namespace; addresses 10.77.0.1 and 10.77.0.2, the bridge 10.77.0.254
# (mpiexec's own daemon, in the root namespace, reaches the hosts' daemons through it). Ranks in
# the two namespaces talk TCP over the veths and the bridge: a kernel network path, not shared
# memory. Only this private /24 on interfaces made here is used. Run with:
#   mpiexec -n 2 --host 10.77.0.1,10.77.0.2 $(scripts/netns_hosts.sh mpi-options) PROGRAM ...
set -euo pipefail

net=10.77.0
hosts=(sy-h1 sy-h2)
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

in_use() {  # a namespace of ours with processes in it: another run is using the hosts
  local h
  for h in "${hosts[@]}"; do [ -n "$(ip netns pids "$h" 2>/dev/null)" ] && return 0; done
  return 1
}

up() {
  if in_use; then
    echo "netns_hosts: sy-h1/sy-h2 are in use by another run (processes inside: ip netns pids); try again later" >&2
    exit 1
  fi
  down 2>/dev/null || true
  trap 'down' ERR  # a half-made setup is removed (the bridge and both namespaces)
  ip link add sy-br0 type bridge
  ip addr add "$net.254/24" dev sy-br0
  ip link set sy-br0 up
  local i=1
  for h in "${hosts[@]}"; do
    ip netns add "$h"
    ip link add "$h-v" type veth peer name eth0 netns "$h"
    ip link set "$h-v" master sy-br0 up
    ip -n "$h" addr add "$net.$i/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
    # TCP between the hosts runs cubic, Linux's default congestion control. A namespace inherits
    # the machine's (BBR on the development VM), whose pacing follows a bandwidth estimate from the
    # flow's last round trips: a 512 KiB all_reduce repeated 40 times inside train took 146 µs
    # before the first step and 190-650 µs from step to step after it, with 1,567 segments
    # retransmitted in 12 steps, all spurious (DSACK); with cubic 136-155 µs in every step and none
    # retransmitted (2026-12-06). Where cubic cannot be set, the machine's stays (a note says so).
    ip -n "$h" route replace "$net.0/24" dev eth0 src "$net.$i" congctl cubic 2>/dev/null ||
      echo "netns_hosts: $h keeps the machine's TCP congestion control ($(sysctl -n net.ipv4.tcp_congestion_control)): cubic could not be set" >&2
    i=$((i + 1))
  done
  trap - ERR
}

down() {
  # Processes left in a namespace (an orphaned orted) keep it and its veth alive: end them first.
  for h in "${hosts[@]}"; do
    ip netns pids "$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$h" 2>/dev/null || true
    ip link del "$h-v" 2>/dev/null || true
  done
  ip link del sy-br0 2>/dev/null || true
}

case "${1:-}" in
  up) up; echo "hosts $net.1 ($hosts), $net.2 (${hosts[1]}); mpiexec options: $("$self" mpi-options)" ;;
  down) down ;;
  check)
    [ "$(id -u)" = 0 ] || { echo "netns_hosts: not root" >&2; exit 1; }
    ip netns add sy-check 2>/dev/null || { echo "netns_hosts: ip netns add is not permitted here" >&2; exit 1; }
    ip netns del sy-check ;;
  "$net.1" | "$net.2")
    # Each host owns its own cores, as a separate machine would: host 1 the first half of this
    # machine's CPUs, host 2 the second. Without this both hosts' Open MPI daemons see the whole
    # machine and bind their one rank to core 0, so the two "machines" share one core.
    i=${1##*.}; shift
    n=$(nproc); half=$((n / 2))
    cpus=$([ "$half" -ge 1 ] && echo "$(((i - 1) * half))-$((i * half - 1))" || echo 0)
    exec ip netns exec "${hosts[$((i - 1))]}" taskset -c "$cpus" sh -c "$*" ;;
  mpi-options)
    # TCP keepalive on mpiexec's own connections to the hosts' daemons (Open MPI's defaults: 300 s
    # idle, then 9 probes 20 s apart): a host cut off is noticed in about 4 s, not 8 minutes, and
    # before a rank's collective watchdog ends the job (10 s in tests/mpi/link_cut.sh): when the
    # watchdog came first, mpiexec's abort waited on the unreachable host's daemon for minutes.
    # --bind-to none: a rank keeps its host's cores (the taskset above); Open MPI's own binding
    # reads the whole machine and would put both hosts' ranks on core 0. --mca rtc ^hwloc: with
    # no binding the daemons need no topology in shared memory, whose write
    # (hwloc_shmem_topology_write) crashed the second daemon on this one machine now and then.
    echo "--bind-to none --mca rtc ^hwloc --mca plm_rsh_agent $self --mca btl tcp,self --mca btl_tcp_if_include $net.0/24 --mca oob_tcp_if_include $net.0/24" \
      "--mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 2" ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) echo "netns_hosts: unknown command '${1:-}'; allowed: up, down, check, mpi-options, or a host address (see --help)" >&2; exit 2 ;;
esac
