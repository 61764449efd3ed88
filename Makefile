# svctrace — see README.md. `make demo` shows it working; `make test` runs everything (as root).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X github.com/svctrace/svctrace/plugin.version=$(VERSION) -X github.com/svctrace/svctrace/plugin.commit=$(COMMIT)
CACHE ?= /var/cache/svctrace
BIN := bin/kubectl-svctrace
# Debian packages the e2e harness, the node-side readers, trace --graph (graphviz) and the terminal tests (tmux) need.
DEPS := iptables nftables etcd-server conntrack ipset iproute2 qemu-system-x86 busybox-static ipvsadm cpio kmod prometheus graphviz tmux
DEP_CMDS := iptables-legacy-save iptables-nft-save nft etcd conntrack ipset ip qemu-system-x86_64 busybox ipvsadm cpio depmod prometheus promtool dot tmux

.PHONY: dist-host help cover-repair race bench-remote-iptables bench-fleet bench-flows bench-live bench-nft bench-agent bench-repair bench-remote record-kube-proxy-version all build demo test unit e2e deps k8s-binaries vet bench bench-dump record-fixtures fuzz clean dist krew-tools validate-krew-manifest
# Release archives: krew wants a semver version.
DIST_VERSION ?= $(shell git describe --tags --match 'v*' 2>/dev/null || echo v0.1.0-dev)
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
KREW_DIR := $(CACHE)/krew-v0.4.4
KREW_PARTIAL ?= 0

all: build

## help: list the targets
help:
	@awk '/^## / { sub(/^## /, ""); if ($$0 ~ /^[a-z0-9-]+:/) { split($$0, a, ":"); printf "  %-28s%s\n", a[1], substr($$0, length(a[1]) + 3) } else printf "  %-28s%s\n", "", $$0 }' $(MAKEFILE_LIST)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/kubectl-svctrace

## demo: trace a Service on the embedded snapshot recorded from a real kube-proxy (no cluster, no root)
demo: build
	$(BIN) trace --demo default/hostnames

## deps: install the Debian packages the tests need (root)
deps:
	@missing=0; for c in $(DEP_CMDS); do command -v $$c >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
		echo "installing $(DEPS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEPS) >/dev/null; \
	fi

## k8s-binaries: build kube-apiserver, kube-controller-manager, kube-proxy and kubectl once into $(CACHE)
k8s-binaries:
	SVCTRACE_CACHE=$(CACHE) hack/k8s-binaries.sh

## vet: go vet (also of the binary for darwin and windows), gofmt and staticcheck (pinned; fetched
## from the Go module proxy)
vet:
	$(GO) vet -tags e2e ./...
	@# The release archives' other systems (a laptop's kubectl plugin): the binary's packages
	@# must build there too (Linux-only code behind build tags).
	GOOS=darwin $(GO) vet ./cmd/...
	GOOS=windows $(GO) vet ./cmd/...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 -tags e2e ./...

## test: the whole suite: vet, unit tests, fuzz seeds, the e2e tests against a real cluster
## (including kube-proxy in IPVS mode inside a QEMU guest) and the krew packaging test (root);
## RUN=REGEX runs only the matching e2e tests
test: deps vet cover-repair race build dist-host krew-tools
	@bin=$$(SVCTRACE_CACHE=$(CACHE) hack/k8s-binaries.sh) && \
	kernel=$$(SVCTRACE_CACHE=$(CACHE) hack/ipvs-vm/kernel.sh) && \
	kwok=$$(SVCTRACE_CACHE=$(CACHE) hack/kwok-binary.sh) && \
	mkdir -p $(CACHE) bin/plugin bin/vm && \
	CGO_ENABLED=0 $(GO) build -o $(CACHE)/netprobe ./test/e2e/netprobe && \
	CGO_ENABLED=0 $(GO) build -tags svctrace_testhooks -o bin/testhooks/kubectl-svctrace ./cmd/kubectl-svctrace && \
	cp $(BIN) bin/plugin/kubectl-svctrace && cp krew/kubectl_complete-svctrace bin/plugin/ && \
	cp $(BIN) $(CACHE)/netprobe $$bin/kube-proxy bin/vm/ && \
	SVCTRACE_E2E=1 SVCTRACE_K8S_BIN=$$bin SVCTRACE_NETPROBE=$(CACHE)/netprobe SVCTRACE_PLUGIN_DIR=$(CURDIR)/bin/plugin \
	SVCTRACE_TESTHOOKS_BIN=$(CURDIR)/bin/testhooks/kubectl-svctrace SVCTRACE_BIN=$(CURDIR)/$(BIN) \
	SVCTRACE_VM_KERNEL=$$kernel SVCTRACE_VM_BIN=$(CURDIR)/bin/vm SVCTRACE_KWOK=$$kwok \
	SVCTRACE_DIST=$(CURDIR)/dist SVCTRACE_DIST_VERSION=$(DIST_VERSION) SVCTRACE_KREW_DIR=$(KREW_DIR) \
		$(GO) test -tags e2e -count=1 -timeout 40m $(if $(RUN),-run '$(RUN)' ./test/e2e/,./...)

## race: the tests of what runs on all cores (check's walks, the objects' decoding, the nft
## JSON's decoding), under the race detector
race:
	$(GO) test -race -count=1 -run 'Concurrent|DecodeObjects|InParallel' ./trace/... ./dataplane/nftjson/

## cover-repair: the repair engine's apply, verify, rollback and undo code (engine.go) must be
## covered at least 90% by its unit tests alone (the fault table over a fake node)
cover-repair:
	@mkdir -p bin && $(GO) test -count=1 -coverprofile=bin/repair.cover ./dataplane/repair/ >/dev/null && \
	awk '$$1 ~ /repair\/engine.go/ { n += $$2; if ($$3 > 0) c += $$2 } END { p = 100 * c / n; printf "repair engine (engine.go): %.1f%% of %d statements covered by unit tests\n", p, n; exit p < 90 }' bin/repair.cover

## unit: the tests that need neither root nor a cluster (the e2e and krew tests are behind the
## e2e build tag, which make test sets)
unit:
	$(GO) test ./...

## bench: parse and trace benchmarks on the recorded 10,000 x 10 dump (make bench-dump first)
bench:
	$(GO) test -run XXX -bench . -benchmem -cpu 1 ./dataplane/xtables/ ./trace/iptables/ ./dataplane/nftjson/ ./dataplane/ipvsadm/

## bench-dump: record the 10,000 Services x 10 endpoints dump with the real kube-proxy, and time
## svctrace against iptables-save side by side (root; about three minutes a mode; IPVS, in the
## QEMU guest, about 40, of which kube-proxy's first sync takes 27; it profiles one live trace
## in the guest, into profile.txt beside the dumps)
bench-dump:
	SVCTRACE_CACHE=$(CACHE) hack/bench-dump.sh

## record-kube-proxy-version: record the scenario as another kube-proxy version programs it
## (KUBE_PROXY_VERSION=v1.33.13), for checking repair's rule text against it (root)
record-kube-proxy-version:
	@[ -n "$(KUBE_PROXY_VERSION)" ] || { echo "usage: make record-kube-proxy-version KUBE_PROXY_VERSION=v1.33.13"; exit 2; }
	SVCTRACE_CACHE=$(CACHE) hack/record-kube-proxy-version.sh $(KUBE_PROXY_VERSION)

## bench-agent: run the agent next to the real kube-proxy (nftables mode) on 10,000 Services x 10
## endpoints while one EndpointSlice changes every second for 5 minutes; CPU, memory, findings (root)
bench-agent:
	bin=$$(hack/k8s-binaries.sh) && CGO_ENABLED=0 $(GO) build -o $(CACHE)/netprobe ./test/e2e/netprobe && \
	CGO_ENABLED=0 $(GO) build -o $(CACHE)/kubectl-svctrace ./cmd/kubectl-svctrace && \
	$(GO) run ./test/e2e/record -mode nftables -services 10000 -endpoints 10 -bin $$bin -netprobe $(CACHE)/netprobe \
		-compare $(CACHE)/kubectl-svctrace -agent $${AGENT_DURATION:-5m} -agent-args "$${AGENT_ARGS:-}"

## bench-repair: stop the real kube-proxy (nftables mode) on 10,000 Services x 10 endpoints, then
## five times replace one endpoint of one Service and time repair of it, dry run and --apply (root)
bench-repair:
	bin=$$(hack/k8s-binaries.sh) && CGO_ENABLED=0 $(GO) build -o $(CACHE)/netprobe ./test/e2e/netprobe && \
	CGO_ENABLED=0 $(GO) build -o $(CACHE)/kubectl-svctrace ./cmd/kubectl-svctrace && \
	$(GO) run ./test/e2e/record -mode nftables -services 10000 -endpoints 10 -bin $$bin -netprobe $(CACHE)/netprobe \
		-compare $${REPAIR_BIN:-$(CACHE)/kubectl-svctrace} -repair

## bench-remote: time a remote trace (through the API server, kwok serving exec) on 10,000
## Services x 10 endpoints in nftables mode, through the svctrace agent's pod and through
## kube-proxy's pod, with the bytes each moves (root)
bench-remote:
	bin=$$(hack/k8s-binaries.sh) && kwok=$$(hack/kwok-binary.sh) && CGO_ENABLED=0 $(GO) build -o $(CACHE)/netprobe ./test/e2e/netprobe && \
	mkdir -p $(CACHE)/remote-bench && CGO_ENABLED=0 $(GO) build -o $(CACHE)/remote-bench/kubectl-svctrace ./cmd/kubectl-svctrace && \
	$(GO) run ./test/e2e/record -mode nftables -services 10000 -endpoints 10 -bin $$bin -netprobe $(CACHE)/netprobe \
		-compare $(CACHE)/remote-bench/kubectl-svctrace -kwok $$kwok -remote

## bench-remote-iptables: time a remote trace (through the API server, kwok serving exec) on
## 10,000 Services x 10 endpoints in iptables mode (legacy) against the bare iptables-legacy-save
## through kube-proxy's pod, side by side (root)
bench-remote-iptables:
	bin=$$(hack/k8s-binaries.sh) && kwok=$$(hack/kwok-binary.sh) && CGO_ENABLED=0 $(GO) build -o $(CACHE)/netprobe ./test/e2e/netprobe && \
	mkdir -p $(CACHE)/remote-bench && CGO_ENABLED=0 $(GO) build -o $(CACHE)/remote-bench/kubectl-svctrace ./cmd/kubectl-svctrace && \
	$(GO) run ./test/e2e/record -mode iptables -legacy -services 10000 -endpoints 10 -bin $$bin -netprobe $(CACHE)/netprobe \
		-compare $(CACHE)/remote-bench/kubectl-svctrace -kwok $$kwok -remote

## bench-nft: time the node-side trace against nft -j list ruleset on the recorded 10,000 x 10
## nftables node loaded into a network namespace (root; make bench-dump MODES=nftables first)
bench-nft:
	SVCTRACE_CACHE=$(CACHE) hack/bench-nft.sh

## bench-live: time node-side trace and check -A against iptables-legacy-save on the recorded
## 10,000 x 10 node loaded into a network namespace (root; make bench-dump MODES=iptables first)
bench-live:
	SVCTRACE_CACHE=$(CACHE) hack/bench-live.sh

## bench-flows: time check -A without and with a 100,000-entry conntrack table (stale flows)
bench-flows:
	SVCTRACE_CACHE=$(CACHE) hack/bench-flows.sh

## bench-fleet: time check --all-nodes on 5,000 kwok-simulated nodes against the real API server
## (root; NODES=... PARALLEL=16,64)
bench-fleet:
	SVCTRACE_CACHE=$(CACHE) hack/bench-fleet.sh

## record-fixtures: re-record the demo snapshot the unit tests use (root)
record-fixtures:
	SVCTRACE_CACHE=$(CACHE) hack/record-fixtures.sh

## fuzz: run each fuzz target for a minute
fuzz:
	@set -e; for t in xtables:FuzzParse xtables:FuzzParseReaderSameAsParse nftjson:FuzzParse nftjson:FuzzParseReaderSameAsParse ipvsadm:FuzzParseIPVS conntrack:FuzzParse; do \
		echo "$$t"; $(GO) test -run XXX -fuzz "^$${t#*:}\$$" -fuzztime 60s -fuzzminimizetime 5s ./dataplane/$${t%%:*}/; done
	@set -e; for t in FuzzObjectHead FuzzFastObjectsAsEncodingJSON; do \
		echo "trace:$$t"; $(GO) test -run XXX -fuzz "^$$t\$$" -fuzztime 60s -fuzzminimizetime 5s ./trace/; done

## dist: archives per OS/arch with LICENSE (dist/kubectl-svctrace_VERSION_OS_ARCH.tar.gz) and the
## krew manifest rendered for them (dist/svctrace.yaml, file:// URIs unless KREW_BASE_URL is set)
dist:
	rm -rf dist && mkdir -p dist
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; exe=kubectl-svctrace; [ $$os = windows ] && exe=kubectl-svctrace.exe; \
		d=dist/tmp-$$os-$$arch; mkdir -p $$d; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath \
			-ldflags "-s -w -X github.com/svctrace/svctrace/plugin.version=$(DIST_VERSION) -X github.com/svctrace/svctrace/plugin.commit=$(COMMIT)" \
			-o $$d/$$exe ./cmd/kubectl-svctrace; \
		cp LICENSE $$d/; extra=""; \
		if [ $$os != windows ]; then cp krew/kubectl_complete-svctrace $$d/; extra=kubectl_complete-svctrace; fi; \
		tar -C $$d -czf dist/kubectl-svctrace_$(DIST_VERSION)_$${os}_$${arch}.tar.gz $$exe LICENSE $$extra; \
		rm -rf $$d; \
	done
	KREW_PARTIAL=$(KREW_PARTIAL) hack/krew-manifest.sh dist $(DIST_VERSION) $${KREW_BASE_URL:-file://$(CURDIR)/dist}

## dist-host: the release archive of this machine's platform only, and a krew manifest naming
## just it: what the krew test installs (make dist builds all six)
dist-host:
	$(MAKE) dist PLATFORMS=$$($(GO) env GOOS)/$$($(GO) env GOARCH) KREW_PARTIAL=1

## krew-tools: build krew and validate-krew-manifest v0.4.4 once into $(CACHE)
krew-tools:
	@[ -x $(KREW_DIR)/krew ] && [ -x $(KREW_DIR)/validate-krew-manifest ] || \
		(cd hack/krew-tools && $(GO) build -o $(KREW_DIR)/krew sigs.k8s.io/krew/cmd/krew && \
		 $(GO) build -o $(KREW_DIR)/validate-krew-manifest sigs.k8s.io/krew/cmd/validate-krew-manifest)

## validate-krew-manifest: krew's own validator (it installs every platform with `kubectl krew`)
validate-krew-manifest: dist krew-tools
	@bin=$$(SVCTRACE_CACHE=$(CACHE) hack/k8s-binaries.sh) && mkdir -p bin/krew && \
	ln -sf $(KREW_DIR)/krew bin/krew/kubectl-krew && ln -sf $$bin/kubectl bin/krew/kubectl && \
	PATH=$(CURDIR)/bin/krew:$$PATH KREW_ROOT=$$(mktemp -d) $(KREW_DIR)/validate-krew-manifest -manifest dist/svctrace.yaml

clean:
	rm -rf bin dist
