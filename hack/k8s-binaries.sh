#!/usr/bin/env bash
# k8s-binaries.sh builds kube-apiserver, kube-controller-manager, kube-proxy and kubectl from the
# pinned k8s.io/kubernetes module (hack/tools) into a cache outside the repository, keyed by version,
# and prints the directory. A binary already in the cache is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/tools/go.mod")
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
out="$cache/k8s-$version/bin"
mkdir -p "$out"
cd "$here/tools"
for bin in kube-apiserver kube-controller-manager kube-proxy kubectl; do
	if [ ! -x "$out/$bin" ]; then
		echo "building $bin $version into $out (first run only; takes minutes)" >&2
		start=$(date +%s)
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" \
			-o "$out/$bin.tmp" "k8s.io/kubernetes/cmd/$bin"
		mv "$out/$bin.tmp" "$out/$bin"
		echo "built $bin in $(( $(date +%s) - start ))s" >&2
	fi
done
echo "$out"
