#!/bin/sh
# Removes everything Scrooge installed for traffic control: table inet scrooge, chains
# SCROOGE-FWD/SCROOGE-CLASS (and their jumps), and root qdiscs with handle 5c:. With --tunnels,
# also its tunnel interfaces (sc + 13 hex digits). Nothing else is touched.
# Usage: tc/flush.sh [--tunnels] [NETNS]
set -eu
TUNNELS=0
NS=
for a in "$@"; do
  case "$a" in
    --tunnels) TUNNELS=1 ;;
    -h|--help) echo "usage: $0 [--tunnels] [NETNS]" >&2; exit 2 ;;
    *) NS=$a ;;
  esac
done
run() { if [ -n "$NS" ]; then ip netns exec "$NS" "$@"; else "$@"; fi; }

if run nft list table inet scrooge >/dev/null 2>&1; then
  run nft delete table inet scrooge && echo "removed nft table inet scrooge"
fi
for t in iptables ip6tables; do
  command -v $t >/dev/null 2>&1 || continue
  for pair in filter:SCROOGE-FWD mangle:SCROOGE-CLASS; do
    table=${pair%%:*}; chain=${pair#*:}
    if run $t -w -t "$table" -L "$chain" -n >/dev/null 2>&1; then
      while run $t -w -t "$table" -D FORWARD -j "$chain" 2>/dev/null; do :; done
      run $t -w -t "$table" -F "$chain"
      run $t -w -t "$table" -X "$chain"
      echo "removed $t $table chain $chain"
    fi
  done
done
for dev in $(run tc qdisc show | awk '$2 == "htb" && $3 == "5c:" { print $5 }'); do
  run tc qdisc del dev "$dev" root && echo "removed root qdisc 5c: on $dev"
done
if [ "$TUNNELS" = 1 ]; then
  for dev in $(run ip -o link show | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep -E '^sc[0-9a-f]{13}$' || true); do
    run ip link del dev "$dev" && echo "removed tunnel $dev"
  done
fi
