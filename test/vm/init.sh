#!/bin/sh
# PID 1 of the test VM (image.sh puts it at /init of the initramfs; run.mjs boots it).
#
# Mounts the kernel's file systems, loads virtio/9p and WireGuard, mounts the 9p shares named on
# the kernel command line at the paths they have on the host, runs /io/cmd (written by run.mjs)
# as root, writes its exit code to /io/rc and powers off. Whatever happens, the VM ends: a
# failure here powers off too (run.mjs then reports the missing exit code), and a hang is
# killed by run.mjs.
#
# Kernel command line: scrooge.shares=TAG:PATH,TAG:PATH... (read-only, at PATH, writable on top)
#                      scrooge.io=TAG (read-write: cmd in, output and rc out, at /io)
export PATH=/usr/sbin:/usr/bin HOME=/root LC_ALL=C TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
exec </dev/console >/dev/console 2>&1

say() { echo "scrooge-vm: $*"; }
off() {
  sync
  umount /io 2>/dev/null
  poweroff -f
  sleep 5
  echo o > /proc/sysrq-trigger # poweroff -f failed (no ACPI?): ask the kernel directly
}

arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }

hostname -F /etc/hostname
ip link set lo up
# As on a router: the module is there and loaded before the agent starts. tun: for wireguard-go.
if ! modprobe -a virtio_pci 9pnet_virtio 9p overlay tun wireguard; then
  say "modprobe failed"; off
fi
say "wireguard module loaded: $(cat /sys/module/wireguard/version 2>/dev/null || echo '?') ($(uname -r))"

IO_TAG=$(arg scrooge.io)
mkdir -p /io
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$IO_TAG" /io; then
  say "cannot mount the io share '$IO_TAG'"; off
fi
# The project and its node_modules: read-only 9p (cached: nothing changes them while the VM
# runs), under an overlay with a tmpfs on top, so tools that write next to their sources (vite
# bundles vitest.config.ts into node_modules/.vite-temp) work and the host's copy stays as it was.
mkdir -p /mnt/share /mnt/rw
mount -t tmpfs -o mode=755 rw /mnt/rw
for share in $(arg scrooge.shares | tr ',' ' '); do
  tag=${share%%:*}
  path=${share#*:}
  mkdir -p "/mnt/share/$tag" "/mnt/rw/$tag/upper" "/mnt/rw/$tag/work" "$path"
  if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro "$tag" "/mnt/share/$tag" ||
     ! mount -t overlay -o "lowerdir=/mnt/share/$tag,upperdir=/mnt/rw/$tag/upper,workdir=/mnt/rw/$tag/work" "$tag" "$path"; then
    say "cannot mount share $tag at $path"; echo 125 > /io/rc; off
  fi
done

say "running /io/cmd (uptime $(cut -d' ' -f1 /proc/uptime) s)"
# Through a pipe, not the console itself: tools that see a terminal redraw progress lines.
mkfifo /tmp/output
cat /tmp/output &
reader=$!
sh /io/cmd > /tmp/output 2>&1 < /dev/null
rc=$?
# Whatever the command left running (a daemon still holding the pipe) ends with it; kernel
# threads ignore the signal.
for pid in $(ls /proc | grep '^[0-9][0-9]*$'); do
  [ "$pid" = 1 ] || [ "$pid" = "$reader" ] || kill -9 "$pid" 2>/dev/null
done
wait "$reader"
echo "$rc" > /io/rc
say "exit code $rc (uptime $(cut -d' ' -f1 /proc/uptime) s)"
off
