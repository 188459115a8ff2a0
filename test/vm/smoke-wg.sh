#!/bin/sh
# Hand-built WireGuard between two namespaces, in the kernel and with wireguard-go, over the
# same veth pair, the way WireGuard's own netns.sh does it: keys from `wg genkey` in 0600
# files, `wg set`, link-local endpoints with a zone, a tunnel address, ping, then iperf3 through
# each in turn (ROUNDS rounds of SECONDS s, alternating), and the median ratio kernel/wireguard-go.
#
# Runs inside the VM (as root, the wireguard module loaded):
#   node test/vm/run.mjs -- sh test/vm/smoke-wg.sh
# ROUNDS and SECONDS (environment) default to 3 and 3. Exits non-zero if a tunnel does not
# carry traffic. Leaves nothing behind (trap).
set -eu
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS:-3}
A=wgsa$$
B=wgsb$$
DIR=$(mktemp -d)
cleanup() {
  # iperf3 and the wireguard-go daemons; their links go with the namespaces.
  for ns in "$A" "$B"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
step() { echo "[smoke-wg] $*"; }
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; } # busybox date has no %N

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip link add veth0 netns "$A" type veth peer name veth0 netns "$B"
ip -n "$A" link set veth0 up
ip -n "$B" link set veth0 up
ll() { # the kernel's link-local address on veth0 in $1 (after DAD)
  for _ in $(seq 50); do
    a=$(ip -n "$1" -6 -o address show dev veth0 scope link | awk '!/tentative/ { sub(/\/.*/, "", $4); print $4 }')
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
  echo "no link-local address on veth0 in $1" >&2; return 1
}
LL_A=$(ll "$A")
LL_B=$(ll "$B")

umask 077
for side in a b; do
  wg genkey > "$DIR/$side.key"
  wg pubkey < "$DIR/$side.key" > "$DIR/$side.pub"
done

# tunnel NAME KIND PORT_BASE: a pair, NAMEa in A and NAMEb in B, fe80::1 <-> fe80::2. Named
# apart: wireguard-go's control sockets (/var/run/wireguard/NAME.sock) are shared by all
# namespaces.
tunnel() {
  kind=$2 port=$3
  for side in a b; do
    name=$1$side
    if [ $side = a ]; then ns=$A peer=b ep="[$LL_B%veth0]:$((port + 1))" lp=$port addr=fe80::1
    else ns=$B peer=a ep="[$LL_A%veth0]:$port" lp=$((port + 1)) addr=fe80::2; fi
    if [ "$kind" = kernel ]; then
      ip -n "$ns" link add "$name" type wireguard
    else
      # wireguard-go daemonizes once its control socket is up.
      ip netns exec "$ns" env LOG_LEVEL=error wireguard-go "$name"
    fi
    ip netns exec "$ns" wg set "$name" private-key "$DIR/$side.key" listen-port "$lp" \
      peer "$(cat "$DIR/$peer.pub")" endpoint "$ep" allowed-ips ::/0,0.0.0.0/0 persistent-keepalive 5
    ip -n "$ns" link set dev "$name" addrgenmode none
    ip -n "$ns" address add "$addr/64" dev "$name"
    ip -n "$ns" link set dev "$name" mtu 1420 up
  done
  name=${1}a
  t0=$(ms)
  for _ in $(seq 50); do
    ip netns exec "$A" ping -6 -c1 -W1 "fe80::2%$name" >/dev/null 2>&1 && break
  done
  ip netns exec "$A" ping -6 -c3 -i 0.2 -W1 "fe80::2%$name" >/dev/null
  step "$kind: ping over $name after $(( $(ms) - t0 )) ms"
  ip netns exec "$A" wg show "$name" dump | sed -n 2p | awk -v k="$kind" '{ print "[smoke-wg] " k ": wg show dump peer endpoint " $3 }'
}

tunnel wgk kernel 51820
tunnel wgu userspace 51830
ip -n "$A" -d link show wgka | grep -q 'wireguard' || { echo "wgka is not a kernel wireguard link" >&2; exit 1; }

ip netns exec "$B" iperf3 -s -D -I "$DIR/iperf.pid" >/dev/null
sleep 0.5
# mbit TARGET: iperf3 TCP A -> B, receiver's Mbit/s.
mbit() {
  for _ in 1 2 3 4 5; do
    out=$(ip netns exec "$A" iperf3 -c "$1" -t "$SECONDS_EACH" -O 0.5 -f m 2>&1) && break
    sleep 0.5 # "the server is busy": the previous test is still closing
  done
  echo "$out" | awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") print $i }'
}
step "veth (no tunnel): $(mbit "$LL_B%veth0") Mbit/s"
ratios=""
r=1
while [ $r -le "$ROUNDS" ]; do
  if [ $((r % 2)) = 1 ]; then k=$(mbit fe80::2%wgka); u=$(mbit fe80::2%wgua); else u=$(mbit fe80::2%wgua); k=$(mbit fe80::2%wgka); fi
  [ -n "$k" ] && [ -n "$u" ] || { echo "iperf3 failed (kernel '$k', wireguard-go '$u')" >&2; exit 1; }
  ratio=$(awk -v k="$k" -v u="$u" 'BEGIN { printf "%.2f", k / u }')
  step "round $r: kernel $k Mbit/s, wireguard-go $u Mbit/s, ratio $ratio"
  ratios="$ratios $ratio"
  r=$((r + 1))
done
median=$(echo "$ratios" | tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
step "kernel/wireguard-go throughput: median ratio $median over $ROUNDS rounds of $SECONDS_EACH s"
