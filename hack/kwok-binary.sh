#!/usr/bin/env bash
# kwok-binary.sh builds kwok (hack/kwok-tools pins the version) once into the cache and prints its
# path. The e2e harness runs it in the node namespace to serve exec for a kube-proxy pod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^require sigs.k8s.io\/kwok \(v[0-9.]*\)$/\1/p' "$here/kwok-tools/go.mod")
out=${SVCTRACE_CACHE:-/var/cache/svctrace}/kwok-$version/kwok
if [ ! -x "$out" ]; then
	echo "building kwok $version (first run only)" >&2
	(cd "$here/kwok-tools" && CGO_ENABLED=0 go build -o "$out.tmp" sigs.k8s.io/kwok/cmd/kwok && mv "$out.tmp" "$out")
fi
echo "$out"
