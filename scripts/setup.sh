#!/bin/sh
# Installs what Scrooge needs and is missing on this machine: Debian packages for the data path
# and the test hosts, then the npm packages. Does nothing when everything is present.
# Used by `npm test` and `npm run demo`, so both work on a fresh machine.
set -eu
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
missing=""
need() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ] && [ ! -x "/sbin/$1" ]; then
    case " $missing " in *" $2 "*) ;; *) missing="$missing $2" ;; esac
  fi
}
need ip iproute2
need tc iproute2
need wg wireguard-tools
need wireguard-go wireguard-go
need babeld babeld
need nft nftables
need iptables iptables
need ip6tables iptables
need iperf3 iperf3
need ping iputils-ping
need traceroute traceroute
need dot graphviz
# The kernel WireGuard backend's tests boot a VM where this kernel has no wireguard module.
if [ ! -d /sys/module/wireguard ] && ! modinfo wireguard >/dev/null 2>&1; then
  need qemu-system-x86_64 qemu-system-x86
  need xz xz-utils
fi

if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scrooge setup: missing Debian packages:$missing" >&2
    echo "scrooge setup: run as root (or: sudo apt-get install --no-install-recommends$missing)" >&2
    exit 1
  fi
  echo "scrooge setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# npm packages: install when node_modules is missing or older than the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "scrooge setup: installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
fi
