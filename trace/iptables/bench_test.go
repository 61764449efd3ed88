package iptables_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
	"github.com/svctrace/svctrace/trace/kubeproxy"
)

// BenchmarkTraceWarm traces one Service of the 10,000 x 10 dump (hack/bench-dump.sh) once the
// ruleset is parsed: what a second trace costs.
func BenchmarkTraceWarm(b *testing.B) {
	rs, err := xtables.Parse(tracetest.BenchFile(b, "iptables-10000x10/iptables-save.txt"))
	if err != nil {
		b.Fatal(err)
	}
	dp := &iptables.Dataplane{V4: rs}
	// The last Service rule in KUBE-SERVICES (the worst case before big chains were indexed).
	var vip netip.Addr
	var port uint16
	for _, r := range rs.Tables["nat"].Chains["KUBE-SERVICES"].Rules {
		if r.Dst.Set && !r.Dst.Neg && r.DPort.Set {
			vip, port = r.Dst.Prefix.Addr(), r.DPort.Lo
		}
	}
	node := &trace.NodeContext{Name: "node1", Local: []netip.Addr{netip.MustParseAddr("172.31.250.2")}}
	pkt := trace.Packet{Src: netip.MustParseAddr("10.244.1.254"), Dst: vip, DstPort: port, Protocol: trace.TCP}
	b.ReportAllocs()
	for b.Loop() {
		res, err := trace.Run(context.Background(), dp, nil, trace.Query{Packet: pkt, Node: node})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Backends) != 10 {
			b.Fatalf("%d backends, want 10", len(res.Backends))
		}
	}
}

// BenchmarkCheckFullNode checks every Service port of the 10,000 x 10 node against the API
// objects recorded with it (hack/bench-dump.sh): issue's target, under 2 s.
func BenchmarkCheckFullNode(b *testing.B) {
	dp, cl, node := benchNode(b)
	b.ResetTimer()
	for b.Loop() {
		res, err := trace.Check(context.Background(), dp, cl, node, trace.CheckScope{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Checked < 10000 {
			b.Fatalf("checked %d", res.Checked)
		}
		for _, f := range res.Findings {
			if f.Severity != trace.SeverityInfo {
				b.Fatalf("finding on a synced node: %s %s", f.Kind, f.Message)
			}
		}
	}
}

// BenchmarkRepairPlanFullNode plans a repair of every Service port of the 10,000 x 10 node
// (large-cluster layout: no endpoint comments) against its recorded API objects: the plan must
// be empty, as the real kube-proxy had synced.
func BenchmarkRepairPlanFullNode(b *testing.B) {
	dp, cl, node := benchNode(b)
	b.ResetTimer()
	for b.Loop() {
		plan, err := kubeproxy.PlanIPTables(dp, cl, node, trace.CheckScope{})
		if err != nil {
			b.Fatal(err)
		}
		if !plan.Empty() {
			b.Fatalf("%d changes on a synced node, first: %+v", len(plan.Changes), plan.Changes[0])
		}
	}
}

// benchNode loads the recorded 10,000 x 10 node and its API objects (hack/bench-dump.sh).
func benchNode(b *testing.B) (*iptables.Dataplane, *trace.Cluster, *trace.NodeContext) {
	b.Helper()
	rs, err := xtables.Parse(tracetest.BenchFile(b, "iptables-10000x10/iptables-save.txt"))
	if err != nil {
		b.Fatal(err)
	}
	cl, err := trace.DecodeObjects(tracetest.BenchFile(b, "iptables-10000x10/objects.json"))
	if err != nil {
		b.Fatal(err)
	}
	return &iptables.Dataplane{V4: rs}, cl, cl.NodeContextFor("node1", nil)
}

// BenchmarkRepairPlanOneServiceGone plans the whole 10,000 x 10 node after one Service left the
// API: the plan removes its rules (rewriting KUBE-SERVICES, 10,000 rules) and names that Service
// only.
func BenchmarkRepairPlanOneServiceGone(b *testing.B) {
	dp, cl, node := benchNode(b)
	gone := cl.Services[5]
	cl = tracetest.WithoutService(cl, gone.Name)
	b.ResetTimer()
	for b.Loop() {
		plan, err := kubeproxy.PlanIPTables(dp, cl, node, trace.CheckScope{})
		if err != nil {
			b.Fatal(err)
		}
		if len(plan.Services) != 1 || !strings.HasPrefix(plan.Services[0], gone.Namespace+"/"+gone.Name) || len(plan.IPTables) != 1 {
			b.Fatalf("plan for one Service gone: services %v, %d tables", plan.Services, len(plan.IPTables))
		}
	}
}
