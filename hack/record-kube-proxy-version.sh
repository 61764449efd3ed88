#!/usr/bin/env bash
# record-kube-proxy-version.sh VERSION records the standard e2e scenario as kube-proxy VERSION (e.g.
# v1.33.13) programs it in iptables mode, into trace/kubeproxy/testdata/kube-proxy-VERSION, so that
# repair's rule text can be checked against that version (trace/kubeproxy/plan_test.go). The
# kube-proxy is built from k8s.io/kubernetes@VERSION on the Go module proxy into the cache, next to
# the harness's own v1.36.3 components. Root; a few minutes the first time.
set -euo pipefail
version=${1:?usage: $0 vVERSION}
cd "$(dirname "$0")/.."
repo=$PWD
cache=${SVCTRACE_CACHE:-/var/cache/svctrace}
base=$(hack/k8s-binaries.sh)
bin="$cache/kube-proxy-$version/bin"
if [ ! -x "$bin/kube-proxy" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	staging=v0.${version#v1.}
	gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	{
		echo "module tools"
		echo "go 1.26.0"
		echo "require k8s.io/kubernetes $version"
		echo "replace ("
		grep "=> ./staging" "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
		echo ")"
	} > "$work/go.mod"
	printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-proxy"\n' > "$work/tools.go"
	if ! (cd "$work" && GONOSUMDB='k8s.io/*' go mod tidy); then
		echo "kube-proxy $version cannot be built here: not every version's modules are on the Go module proxy (see go list -m -versions k8s.io/kube-proxy)" >&2
		exit 1
	fi
	(cd "$work" && CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version" -o kube-proxy k8s.io/kubernetes/cmd/kube-proxy)
	mkdir -p "$bin"
	cp "$base"/* "$bin"/
	mv "$work/kube-proxy" "$bin/kube-proxy"
fi
CGO_ENABLED=0 go build -o "$cache/netprobe" ./test/e2e/netprobe
out="$repo/trace/kubeproxy/testdata/kube-proxy-$version"
go run ./test/e2e/record -mode iptables -bin "$bin" -netprobe "$cache/netprobe" -out "$out"
rm -f "$out/snapshot.yaml"
echo "recorded $out; add it to TestRepairPlanIsEmptyOnTheRecordedNode and write its README"
