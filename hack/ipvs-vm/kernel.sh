#!/usr/bin/env bash
# kernel.sh prints the directory of Debian's cloud kernel (with IPVS modules), unpacked once into
# the cache; this machine's own kernel has no IPVS.
set -euo pipefail
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}/vm
find_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
pkg=$(find_pkg)
if [ -z "$pkg" ]; then
	apt-get update -qq >/dev/null 2>&1 || true
	pkg=$(find_pkg)
fi
[ -n "$pkg" ] || { echo "kernel.sh: no linux-image-cloud-amd64 in Debian's package lists" >&2; exit 1; }
dir="$cache/$pkg"
if [ ! -d "$dir/boot" ]; then
	mkdir -p "$cache"
	(cd "$cache" && apt-get download "$pkg" >/dev/null 2>&1 && dpkg-deb -x "$pkg"_*.deb "$dir.tmp" && mv "$dir.tmp" "$dir" && rm -f "$pkg"_*.deb)
fi
echo "$dir"
