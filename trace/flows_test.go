package trace_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/trace"
)

// flowsTable is conntrack output (the format of dataplane/conntrack/testdata/extended.txt) for the
// recorded demo node: default/dns is 10.96.10.53:53/udp with endpoints 10.244.1.51:5353 and
// 10.244.2.52:5353, default/hostnames 10.96.10.10:80/tcp with 10.244.1.11-13:9376.
const flowsTable = `conntrack v1.4.7 (conntrack-tools): 10 flow entries have been shown.
ipv4     2 udp      17 28 src=10.244.1.99 dst=10.96.10.53 sport=40001 dport=53 src=10.244.1.51 dst=10.244.1.99 sport=5353 dport=40001 mark=0 use=1
ipv4     2 udp      17 28 src=10.244.1.99 dst=10.96.10.53 sport=40002 dport=53 src=10.244.1.77 dst=10.244.1.99 sport=5353 dport=40002 mark=0 use=1
ipv4     2 udp      17 28 src=10.244.1.98 dst=10.96.10.53 sport=40003 dport=53 src=10.244.1.77 dst=10.244.1.98 sport=5353 dport=40003 mark=0 use=1
ipv4     2 udp      17 28 src=10.244.1.97 dst=10.96.10.53 sport=40004 dport=53 src=10.244.1.77 dst=10.244.1.97 sport=5353 dport=40004 mark=0 zone=5 use=1
ipv4     2 udp      17 28 src=10.244.1.99 dst=10.96.10.53 sport=40005 dport=53 src=10.244.2.52 dst=10.244.1.99 sport=5353 dport=40005 mark=0 use=1
ipv4     2 tcp      6 431998 ESTABLISHED src=10.244.1.99 dst=10.96.10.10 sport=50001 dport=80 src=10.244.1.78 dst=10.244.1.99 sport=9376 dport=50001 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 118 TIME_WAIT src=10.244.1.99 dst=10.96.10.10 sport=50002 dport=80 src=10.244.1.78 dst=10.244.1.99 sport=9376 dport=50002 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 118 TIME_WAIT src=10.244.1.99 dst=10.96.10.10 sport=50003 dport=80 src=10.244.1.79 dst=10.244.1.99 sport=9376 dport=50003 [ASSURED] mark=0 use=1
ipv4     2 udp      17 28 src=10.244.1.99 dst=10.244.1.77 sport=40006 dport=5353 src=10.244.1.77 dst=10.244.1.99 sport=5353 dport=40006 mark=0 use=1
ipv4     2 udp      17 28 src=10.244.1.99 dst=10.99.99.99 sport=40007 dport=53 src=10.244.1.77 dst=10.244.1.99 sport=5353 dport=40007 mark=0 use=1
`

// TestCheckFlows: on the recorded node, entries to an address that is no endpoint of the Service
// port are StaleFlow findings, grouped by Service address, backend and zone, with their clients
// and TCP states; entries to current endpoints, to a backend the rules still program (dns-2,
// removed from the API here), untranslated entries and entries to no Service are not.
func TestCheckFlows(t *testing.T) {
	dp, cl := recorded.IPTables(t, recorded.Root()+"/dataplane/snapshot/demo")
	// dns-2 (10.244.2.52) leaves the API; the recorded rules still send new flows to it.
	var slices []*discoveryv1.EndpointSlice
	for _, s := range cl.Slices {
		s = s.DeepCopy()
		var eps []discoveryv1.Endpoint
		for _, e := range s.Endpoints {
			if len(e.Addresses) > 0 && e.Addresses[0] != "10.244.2.52" {
				eps = append(eps, e)
			}
		}
		s.Endpoints = eps
		slices = append(slices, s)
	}
	cl = trace.NewCluster(cl.Services, slices, cl.Pods, cl.Nodes)
	conns, err := conntrack.Parse([]byte(flowsTable))
	if err != nil {
		t.Fatal(err)
	}
	got, err := trace.CheckFlows(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{}, conns)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		service, dst, backend string
		sev                   trace.Severity
		entries, est, closing int
		zone                  uint16
		clients               string
	}
	wants := []want{
		{"default/hostnames:default", "10.96.10.10:80", "10.244.1.78:9376", trace.SeverityError, 2, 1, 1, 0, "10.244.1.99"},
		{"default/hostnames:default", "10.96.10.10:80", "10.244.1.79:9376", trace.SeverityInfo, 1, 0, 1, 0, "10.244.1.99"},
		{"default/dns:dns", "10.96.10.53:53", "10.244.1.77:5353", trace.SeverityError, 2, 0, 0, 0, "10.244.1.98, 10.244.1.99"},
		{"default/dns:dns", "10.96.10.53:53", "10.244.1.77:5353", trace.SeverityError, 1, 0, 0, 5, "10.244.1.97"},
	}
	if len(got) != len(wants) {
		for _, f := range got {
			t.Logf("%s %s %+v", f.Kind, f.Service, f.Flows)
		}
		t.Fatalf("%d findings, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		f := got[i]
		d := f.Flows
		if f.Kind != trace.StaleFlow || d == nil {
			t.Fatalf("finding %d: %+v", i, f)
		}
		if f.Service != w.service || d.Dst != w.dst || d.Backend != w.backend || f.Severity != w.sev || d.Entries != w.entries ||
			d.Established != w.est || d.Closing != w.closing || d.Zone != w.zone || strings.Join(d.Clients, ", ") != w.clients {
			t.Errorf("finding %d: %s %s %s %+v, want %+v", i, f.Service, f.Severity, f.Message, d, w)
		}
		if !strings.Contains(f.Message, w.backend) || len(f.Evidence) == 0 || !strings.HasPrefix(f.Evidence[0], "conntrack ") {
			t.Errorf("finding %d does not show the flows: %s %v", i, f.Message, f.Evidence)
		}
	}
	// Scoped to another Service: nothing.
	if got, _ := trace.CheckFlows(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{Namespace: "default", Name: "web"}, conns); len(got) != 0 {
		t.Errorf("scope default/web: %d findings", len(got))
	}

	// The repair plan: UDP flows by default, TCP only when asked; each group once, in its zone;
	// a flush already planned for any zone (a repair that removes the endpoint) covers both
	// zones' groups, and both TCP groups are added (the closing-only one is reported too).
	plan := &trace.RepairPlan{}
	plan.AddStaleFlows(got, false)
	if len(plan.Conntrack) != 2 || plan.Conntrack[0].Protocol != "udp" || *plan.Conntrack[0].Zone != 0 || *plan.Conntrack[1].Zone != 5 ||
		plan.Conntrack[0].Backend != "10.244.1.77" || plan.Conntrack[0].BackendPort != 5353 || plan.Conntrack[0].Entries != 2 {
		t.Errorf("plan without TCP: %+v", plan.Conntrack)
	}
	if len(plan.Notes) != 1 || !strings.HasPrefix(plan.Notes[0], trace.StaleTCPNote) {
		t.Errorf("the TCP flows left alone are not named: %v", plan.Notes)
	}
	plan = &trace.RepairPlan{Conntrack: []trace.ConntrackFlush{{Protocol: "udp", Dst: "10.96.10.53:53", Backend: "10.244.1.77"}}}
	plan.AddStaleFlows(got, true)
	if len(plan.Conntrack) != 3 || len(plan.Changes) != 2 || len(plan.Notes) != 0 || plan.Conntrack[1].Protocol != "tcp" {
		t.Errorf("plan with TCP, one flush already planned: %+v %+v", plan.Conntrack, plan.Changes)
	}
}

// TestCheckFlowsTerminating: a pod being deleted that still serves is a current endpoint; once
// it no longer serves, its flows are stale and the finding names the pod. (hostnames-a,
// 10.244.1.11, is made an endpoint of default/dns here, which the recorded rules do not program.)
func TestCheckFlowsTerminating(t *testing.T) {
	dp, cl := recorded.IPTables(t, recorded.Root()+"/dataplane/snapshot/demo")
	pods := append([]*corev1.Pod(nil), cl.Pods...)
	found := false
	for i, p := range pods {
		if p.Status.PodIP == "10.244.1.11" {
			p = p.DeepCopy()
			now := metav1.Now()
			p.DeletionTimestamp = &now
			pods[i], found = p, true
		}
	}
	if !found {
		t.Fatal("no pod 10.244.1.11 in the recorded objects")
	}
	line := "udp 17 28 src=10.244.1.99 dst=10.96.10.53 sport=40001 dport=53 src=10.244.1.11 dst=10.244.1.99 sport=5353 dport=40001 mark=0 use=1\n"
	conns, err := conntrack.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	node := cl.NodeContextFor("node1", nil)
	check := func(serving bool) []trace.Finding {
		var slices []*discoveryv1.EndpointSlice
		for _, s := range cl.Slices {
			s = s.DeepCopy()
			if s.Labels[discoveryv1.LabelServiceName] == "dns" {
				s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.1.11"},
					Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(false), Serving: ptrTo(serving), Terminating: ptrTo(true)}})
			}
			slices = append(slices, s)
		}
		got, err := trace.CheckFlows(context.Background(), dp, trace.NewCluster(cl.Services, slices, pods, cl.Nodes), node, trace.CheckScope{}, conns)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := check(true); len(got) != 0 {
		t.Fatalf("a serving terminating endpoint's flow is reported stale: %v", got)
	}
	got := check(false)
	if len(got) != 1 || got[0].Flows.Pod == nil || got[0].Flows.Pod.Name != "hostnames-a" || !got[0].Flows.Terminating || !strings.Contains(got[0].Message, "terminating") {
		t.Fatalf("the flow to a terminating, no longer serving pod: %+v", got)
	}
}

func ptrTo[T any](v T) *T { return &v }

// benchConntrack is conntrack output with n entries for the recorded demo node, in the format of
// the recorded testdata: 90% TCP connections established to default/hostnames' endpoints, 9% UDP
// to default/dns's, 1% TCP still translated to addresses that are no endpoint (stale).
func benchConntrack(n int) []byte {
	var b strings.Builder
	hostnames := []string{"10.244.1.11", "10.244.1.12", "10.244.1.13"}
	dns := []string{"10.244.1.51", "10.244.2.52"}
	for i := 0; i < n; i++ {
		client := fmt.Sprintf("10.244.%d.%d", 100+i/60000, 1+(i/240)%250)
		sport := 10000 + i%50000
		switch {
		case i%100 == 0:
			fmt.Fprintf(&b, "ipv4     2 tcp      6 431999 ESTABLISHED src=%s dst=10.96.10.10 sport=%d dport=80 src=10.244.9.%d dst=%s sport=9376 dport=%d [ASSURED] mark=0 use=1\n", client, sport, 1+(i/100)%200, client, sport)
		case i%100 < 10:
			be := dns[i%2]
			fmt.Fprintf(&b, "ipv4     2 udp      17 28 src=%s dst=10.96.10.53 sport=%d dport=53 src=%s dst=%s sport=5353 dport=%d mark=0 use=1\n", client, sport, be, client, sport)
		default:
			be := hostnames[i%3]
			fmt.Fprintf(&b, "ipv4     2 tcp      6 431999 ESTABLISHED src=%s dst=10.96.10.10 sport=%d dport=80 src=%s dst=%s sport=9376 dport=%d [ASSURED] mark=0 use=1\n", client, sport, be, client, sport)
		}
	}
	return []byte(b.String())
}

// BenchmarkCheckFlows100k is what stale flows add to `check`: parsing a 100,000-entry conntrack
// table and joining it with the API (make bench-flows times the whole command side by side).
// SVCTRACE_CONNTRACK_OUT=FILE also writes the table, for that comparison.
func BenchmarkCheckFlows100k(b *testing.B) {
	dp, cl := recorded.IPTables(b, recorded.Root()+"/dataplane/snapshot/demo")
	data := benchConntrack(100000)
	if out := os.Getenv("SVCTRACE_CONNTRACK_OUT"); out != "" {
		if err := os.WriteFile(out, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	node := cl.NodeContextFor("node1", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conns, err := conntrack.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		got, err := trace.CheckFlows(context.Background(), dp, cl, node, trace.CheckScope{}, conns)
		if err != nil || len(got) != 200 {
			b.Fatalf("%d findings (%v), want 200", len(got), err)
		}
	}
}
