#!/bin/sh
# Shows what Scrooge installed for traffic control: its HTB trees (handle 5c:) with counters,
# and its packet filter with the untunneled-drop counter. Usage: tc/show.sh [NETNS]
set -eu
if [ $# -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: $0 [NETNS]   (NETNS: a network namespace, e.g. a sim node 'demo-R')" >&2
  exit 2
fi
run() { if [ -n "${NS:-}" ]; then ip netns exec "$NS" "$@"; else "$@"; fi; }
NS=${1:-}
if [ -n "$NS" ] && ! ip netns list | awk '{print $1}' | grep -qx "$NS"; then
  echo "$0: no network namespace '$NS'" >&2
  exit 1
fi

found=0
for dev in $(run tc qdisc show | awk '$2 == "htb" && $3 == "5c:" { print $5 }'); do
  found=1
  echo "== $dev"
  run tc -s class show dev "$dev" | awk '/^class/ { print; next } /Sent/ { print "   " $0 }'
done
[ "$found" = 1 ] || echo "no Scrooge HTB trees (handle 5c:)"

echo "== packet filter"
if run nft list table inet scrooge >/dev/null 2>&1; then
  run nft list counter inet scrooge untunneled | awk '/packets/ { print "untunneled packets dropped: " $2 " (" $4 " bytes)" }'
  run nft list chain inet scrooge forward
elif run iptables -w -L SCROOGE-FWD -n >/dev/null 2>&1; then
  for t in iptables ip6tables; do
    echo "-- $t"
    run $t -w -L SCROOGE-FWD -n -v -x
    run $t -w -t mangle -L SCROOGE-CLASS -n -v -x
  done
else
  echo "no Scrooge packet filter (table inet scrooge or chains SCROOGE-*)"
fi
