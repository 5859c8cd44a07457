#!/usr/bin/env bash
# netns-cluster.sh: a small "cluster" of hosts on one Linux machine, for multi-host tests.
#
# Each host is a network namespace with one veth interface plugged into a bridge that lives in
# its own "switch" namespace (so the machine's own network is never touched). Host i has the
# address 10.<net>.0.<i+1>/24. An optional per-host rate limit shapes both directions of the
# host's link with tbf (this kernel has tbf and htb but no netem: delay and loss come from a UDP
# relay in the tests instead).
#
#   netns-cluster.sh up   NAME HOSTS [RATE]   create hosts NAME-h0 .. NAME-h<HOSTS-1>
#                                             (RATE as tc writes it, e.g. 1gbit; empty = none)
#   netns-cluster.sh down NAME                kill every process inside, delete everything
#   netns-cluster.sh with NAME HOSTS [RATE] -- CMD...
#                                             up, run CMD, and always tear down afterwards
#   netns-cluster.sh ip   NAME I              print host I's address
#   netns-cluster.sh link NAME I up|down      cut or restore host I's link (the fault test)
#
# NETNS_MTU (default 1500, plain Ethernet) sets the MTU of every link, e.g. 9000 for the jumbo
# frames of a cluster fabric.
#
# Needs root and iproute2. `up` tears down whatever it built if any step fails.
set -euo pipefail

die() { echo "netns-cluster: $*" >&2; exit 1; }

# The subnet is derived from NAME so that clusters of concurrent test runs do not collide.
subnet_of() { echo $(( ( $(printf '%s' "$1" | cksum | cut -d' ' -f1) % 200 ) + 20 )); }
host_ip() { echo "10.$(subnet_of "$1").0.$(( $2 + 1 ))"; }

check_name() {
	[[ "$1" =~ ^[a-z0-9]{1,8}$ ]] || die "cluster name '$1' must be 1-8 lowercase letters or digits (interface names are short)"
}

down() {
	local name=$1 ns
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^${name}-(h[0-9]+|sw)$" || true); do
		# A namespace outlives nothing by itself: processes inside keep running after
		# `ip netns del`, so kill them first.
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
}

up() {
	local name=$1 hosts=$2 rate=${3:-}
	[[ "$hosts" =~ ^[0-9]+$ ]] && ((hosts >= 1 && hosts <= 64)) || die "HOSTS must be 1..64, got '$hosts'"
	down "$name"
	trap 'down "$name"' ERR
	local sw="${name}-sw" i h
	ip netns add "$sw"
	ip -n "$sw" link set lo up
	ip -n "$sw" link add br0 type bridge
	ip -n "$sw" link set br0 up
	for ((i = 0; i < hosts; i++)); do
		h="${name}-h$i"
		ip netns add "$h"
		ip -n "$h" link set lo up
		# veth pair: eth0 inside the host, p<i> on the switch.
		ip link add "${name}e$i" netns "$h" type veth peer name "${name}p$i" netns "$sw"
		ip -n "$h" link set "${name}e$i" name eth0
		ip -n "$h" addr add "$(host_ip "$name" "$i")/24" dev eth0
		ip -n "$h" link set eth0 up
		ip -n "$sw" link set "${name}p$i" master br0
		if [ "${NETNS_MTU:-1500}" != 1500 ]; then
			ip -n "$h" link set eth0 mtu "$NETNS_MTU"
			ip -n "$sw" link set "${name}p$i" mtu "$NETNS_MTU"
		fi
		ip -n "$sw" link set "${name}p$i" up
		if [ -n "$rate" ]; then
			# Shape egress on both ends so the host's link is RATE in each direction.
			ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 50ms
			ip netns exec "$sw" tc qdisc add dev "${name}p$i" root tbf rate "$rate" burst 256kb latency 50ms
		fi
	done
	trap - ERR
}

cmd=${1:-}; shift || true
case "$cmd" in
up)
	(($# >= 2)) || die "usage: up NAME HOSTS [RATE]"
	[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
	command -v ip >/dev/null || die "ip (iproute2) not found"
	check_name "$1"; up "$@" ;;
down)
	(($# == 1)) || die "usage: down NAME"
	check_name "$1"; down "$1" ;;
ip)
	(($# == 2)) || die "usage: ip NAME I"
	check_name "$1"; host_ip "$1" "$2" ;;
link)
	(($# == 3)) || die "usage: link NAME I up|down"
	check_name "$1"
	[[ "$3" == up || "$3" == down ]] || die "link state must be up or down, got '$3'"
	ip -n "$1-sw" link set "$1p$2" "$3" ;;
with)
	(($# >= 4)) || die "usage: with NAME HOSTS [RATE] -- CMD..."
	name=$1 hosts=$2 rate=""
	shift 2
	if [ "$1" != "--" ]; then rate=$1; shift; fi
	[ "$1" = "--" ] || die "expected -- before the command"
	shift
	check_name "$name"
	trap 'down "$name"' EXIT INT TERM
	up "$name" "$hosts" "$rate"
	"$@" ;;
*)
	die "unknown command '${cmd}'; use up, down, with, ip or link" ;;
esac
