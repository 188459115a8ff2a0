#!/bin/sh
# The netns tests that say something about the kernel WireGuard backend, run inside the VM with
# every agent forced to tunnels.backend "kernel" (issue 14):
#   two-nodes      tunnel, ping over the tunnel addresses, iperf3 against a bare kernel pair
#   lan-5          exactly 4 tunnels each when all agents start at once, the same 4 after 60 s
#   kill -9        a killed agent's kernel links adopted by the next, no duplicates
#   forwards only  untunneled forwarding dropped, tunneled traffic through (nftables)
#   line of five   babeld over kernel tunnels: n1 reaches U and every mesh address, traceroute hop by hop
#
#   node test/vm/run.mjs -- sh test/vm/netns-kernel.sh [VITEST ARGS...]
#
# Time budgets are scaled by SCROOGE_TEST_SLOWDOWN (test/netns/lib.ts): qemu without KVM runs
# node ~30x slower than the host. SCROOGE_VM_TESTS (a vitest -t pattern) picks other tests.
set -eu
export SCROOGE_TEST_BACKEND=kernel
export SCROOGE_TEST_SLOWDOWN="${SCROOGE_TEST_SLOWDOWN:-10}"
TESTS=${SCROOGE_VM_TESTS:-'two-nodes|lan-5|kill -9|forwards only tunneled|converges with no mesh route'}
exec node node_modules/vitest/vitest.mjs run --project netns --reporter=verbose \
  --testTimeout=$((180000 * SCROOGE_TEST_SLOWDOWN)) --hookTimeout=$((120000 * SCROOGE_TEST_SLOWDOWN)) \
  test/netns/tunnels.test.ts test/netns/traffic.test.ts test/netns/routing.test.ts -t "$TESTS" "$@"
