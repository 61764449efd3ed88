#!/usr/bin/env bash
# build-initramfs.sh OUT.cpio.gz KERNEL_DIR BIN_DIR SCENARIO [EXTRA_FILE:GUEST_PATH ...]
#
# Builds the initramfs of the IPVS test VM: Debian's cloud kernel modules, static busybox, the
# host's iproute2, iptables (legacy), ipset, ipvsadm and conntrack with their libraries, the
# static Go binaries in BIN_DIR (kube-proxy, netprobe, kubectl-svctrace), /init (below) and the
# scenario script the test wrote. Everything runs inside the VM; it reaches only the API server,
# through QEMU's guestfwd.
set -euo pipefail
out=$1 kdir=$2 bindir=$3 scenario=$4
shift 4
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
kver=$(ls "$kdir/lib/modules")
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,run,tmp,var/run/netns,var/lib,root}
cp /usr/bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
# Real tools where kube-proxy and the tests need them (busybox's ip has no netns): copied with
# every library they load.
copy() {
	local f=$1
	mkdir -p "$root$(dirname "$f")"
	cp -L "$f" "$root$f"
	for lib in $(ldd "$f" 2>/dev/null | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
		[ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
	done
}
for f in /bin/bash $(command -v kmod) /usr/sbin/ip /usr/sbin/xtables-legacy-multi /usr/sbin/ipset /usr/sbin/ipvsadm /usr/sbin/conntrack; do copy "$f"; done
ln -sf "$(command -v kmod)" "$root/usr/sbin/modprobe"
for x in /usr/lib/x86_64-linux-gnu/xtables/*.so; do copy "$x"; done
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
	ln -sf xtables-legacy-multi "$root/usr/sbin/$n"
done
# busybox's sh prefers its own applets; /init and the scenario run under bash, and the applets that
# shadow real tools go.
rm -f "$root/bin/ip" "$root/bin/modprobe" "$root/bin/sh"
ln -s bash "$root/bin/sh"
cp /etc/protocols /etc/services "$root/etc/"
echo "root:x:0:0::/root:/bin/sh" > "$root/etc/passwd"
echo "hosts: files" > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost vm1\n' > "$root/etc/hosts"
# Kernel modules: networking, netfilter, IPVS, virtio and what they need.
m="$root/lib/modules/$kver"
mkdir -p "$m"
cp -a "$kdir/lib/modules/$kver/kernel" "$m/"
rm -rf "$m/kernel/drivers/gpu" "$m/kernel/sound" "$m/kernel/fs" "$m/kernel/drivers/infiniband" "$m/kernel/drivers/md" "$m/kernel/drivers/scsi"
cp "$kdir/lib/modules/$kver"/modules.* "$m/"
# The package leaves modules.dep to the installer's depmod.
depmod -b "$root" "$kver"
for f in "$bindir"/*; do cp "$f" "$root/bin/"; done
cp "$scenario" "$root/scenario.sh"
for extra in "$@"; do
	src=${extra%%:*} dst=${extra#*:}
	mkdir -p "$root$(dirname "$dst")"
	cp "$src" "$root$dst"
done
cp "$(dirname "$0")/init" "$root/init"
chmod +x "$root/init" "$root/scenario.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
