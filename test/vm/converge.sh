#!/bin/sh
# Convergence of a mesh with the kernel backend beside wireguard-go, in the same VM (issue 14):
# for each backend, `sim up SCENARIO` with tunnels.backend forced, `sim wait`, the seconds from
# the agents' start to every pair handshaken, the tunnels per node, the agents' CPU, then
# `sim down`. Agent logs and the kernel's messages are kept in $SCROOGE_VM_OUT/NAME-BACKEND/.
#
#   node test/vm/run.mjs --out DIR -- sh test/vm/converge.sh lan-5 kernel userspace
#
# CONVERGE_WAIT_S: how long `sim wait` waits (default 900); CONVERGE_COUNTS=0 skips counting
# each node's tunnels (under TCG a busy lan-20 agent misses the CLI's 5 s, one node after another).
set -eu
SCENARIO=$1
shift
OUT=${SCROOGE_VM_OUT:-/tmp}
export SCROOGE_SIM_READY_TIMEOUT_MS=${SCROOGE_SIM_READY_TIMEOUT_MS:-600000}
scrooge() { node dist/scrooge.js "$@"; }
ID=cv$$
OVERLAY=$(mktemp)
trap 'scrooge sim down "$ID" >/dev/null 2>&1 || true; rm -f "$OVERLAY"' EXIT
agents_cpu() { # seconds of CPU used by all agents so far
  for p in $(pgrep -f 'scrooge.js run'); do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk '{ t += $1 + $2 } END { printf "%.1f", t / 100 }'
}

for backend in "$@"; do
  # Tunnels only (routing off): what the backend costs, not babeld. Under TCG twenty agents
  # starting at once make one `nft -f` take over 10 s: give commands two minutes.
  echo "{\"tunnels\": {\"backend\": \"$backend\"}, \"routing\": {\"mode\": \"off\"}, \"commandTimeout\": \"120s\"}" > "$OVERLAY"
  dmesg -c >/dev/null
  dir="$OUT/$SCENARIO-$backend"
  mkdir -p "$dir"
  if ! scrooge sim up "core-scenarios/$SCENARIO.xml" --id "$ID" --config-overlay "$OVERLAY" > "$dir/up.txt" 2>&1; then
    # An agent that died at start: keep why (its log) instead of waiting for a mesh that cannot form.
    tail -3 "$dir/up.txt"
    cp -r "/run/scrooge/sim/$ID/logs/." "$dir/" 2>/dev/null || true
    dmesg > "$dir/dmesg.txt"
    echo "RESULT $SCENARIO $backend: sim up failed (logs in $dir)"
    scrooge sim down "$ID" | tail -1
    continue
  fi
  tail -1 "$dir/up.txt"
  waited=$(scrooge sim wait "$ID" --timeout "${CONVERGE_WAIT_S:-900}" --json | tr -d '\n ' | sed -n 's/.*"sinceAgentsStarted":\([0-9.]*\).*/\1/p')
  cpu=$(agents_cpu)
  counts=""
  [ "${CONVERGE_COUNTS:-1}" = 0 ] || for n in $(ls "/run/scrooge/sim/$ID/nodes"); do
    c=$(scrooge sim ctl "$ID" "$n" -- tunnels --json | grep -c '"ifname"' || true)
    counts="$counts $n:$c"
  done
  cp -r "/run/scrooge/sim/$ID/logs/." "$dir/"
  dmesg > "$dir/dmesg.txt"
  echo "RESULT $SCENARIO $backend: every pair handshaken ${waited:-never} s after the agents started; agents' CPU ${cpu} s; tunnels per node:$counts"
  scrooge sim down "$ID" | tail -1
done
