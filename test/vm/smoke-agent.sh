#!/bin/sh
# The agent with the kernel backend, through the CLI as an operator would run it: two-nodes.xml
# with `tunnels.backend: "kernel"` (so a kernel that cannot make WireGuard links fails instead
# of quietly taking wireguard-go), `sim wait`, a ping each way over the tunnel addresses, and
# proof that the tunnels are kernel links with no wireguard-go behind them; `sim down` leaves
# no namespace.
#
# Runs inside the VM: node test/vm/run.mjs -- sh test/vm/smoke-agent.sh   (dist/ built first)
set -eu
ID=vm$$
OVERLAY=$(mktemp)
scrooge() { node dist/scrooge.js "$@"; }
step() { echo "[smoke-agent] $*"; }
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
trap 'scrooge sim down "$ID" >/dev/null 2>&1 || true; rm -f "$OVERLAY"' EXIT

echo '{"tunnels": {"backend": "kernel"}}' > "$OVERLAY"
t0=$(ms)
scrooge sim up core-scenarios/two-nodes.xml --id "$ID" --config-overlay "$OVERLAY"
step "sim up: $(( $(ms) - t0 )) ms"
t0=$(ms)
scrooge sim wait "$ID" --timeout 60
step "sim wait: $(( $(ms) - t0 )) ms"

# json FIELD: the first "FIELD": "value" in the JSON on stdin (no jq in the VM; node is slow here).
json() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -1; }
for pair in n1:n2 n2:n1; do
  me=${pair%:*} peer=${pair#*:}
  addr=$(scrooge sim ctl "$ID" "$peer" -- status --json | json tunnelAddress)
  ifname=$(scrooge sim ctl "$ID" "$me" -- tunnels --json | json ifname)
  scrooge sim exec "$ID" "$me" -- ip -d link show dev "$ifname" | grep -q ' wireguard ' \
    || { echo "$me: $ifname is not a kernel WireGuard link" >&2; exit 1; }
  scrooge sim exec "$ID" "$me" -- ping -6 -c 3 -i 0.2 -W 1 "$addr%$ifname" | grep 'packets transmitted'
  step "$me -> $peer over $ifname ($addr): ok"
  scrooge sim exec "$ID" "$me" -- wg show "$ifname" dump | sed -n 2p | awk '{ print "[smoke-agent] wg show dump: endpoint " $3 ", latest handshake " $5 }'
done
if pgrep -x wireguard-go >/dev/null; then echo "wireguard-go is running: the agents did not use the kernel" >&2; exit 1; fi
scrooge sim ctl "$ID" n1 -- tunnels

scrooge sim down "$ID"
left=$(ip netns list | grep -c "^$ID-" || true)
[ "$left" = 0 ] || { echo "sim down left $left namespaces" >&2; exit 1; }
step "sim down: nothing left"
