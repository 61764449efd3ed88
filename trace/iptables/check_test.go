package iptables_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

// TestCheckRecordedNodeIsClean: what the real kube-proxy programmed agrees with the API it read.
func TestCheckRecordedNodeIsClean(t *testing.T) {
	dp, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	res, err := trace.Check(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tracetest.FindingKinds(res, trace.SeverityWarning); len(got) != 0 {
		t.Fatalf("findings on a freshly synced node: %v", got)
	}
	if res.Checked < 12 {
		t.Errorf("checked %d service ports", res.Checked)
	}
	infos := strings.Join(tracetest.FindingKinds(res, trace.SeverityInfo), "; ")
	for _, want := range []string{"NoEndpoints default/empty:http", "NoEndpoints default/remote-itp:http"} {
		if !strings.Contains(infos, want) {
			t.Errorf("infos %q lack %q", infos, want)
		}
	}
}

// TestCheckFindsWhatChangedInTheAPI: the same dump against API objects edited the way the e2e test
// edits the live cluster: a pod gone from the slice, a new pod in it, a Service deleted.
func TestCheckFindsWhatChangedInTheAPI(t *testing.T) {
	dp, _ := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	edited := tracetest.StaleDemo(t, "../../dataplane/snapshot/demo")
	res, err := trace.Check(context.Background(), dp, edited, edited.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(tracetest.FindingKinds(res, trace.SeverityError), "; ")
	want := "MissingEndpoint default/hostnames:default; StaleEndpoint default/hostnames:default; StaleService default/multi:http; StaleService default/multi:metrics"
	if got != want {
		t.Fatalf("findings\n got %s\nwant %s", got, want)
	}
	// The evidence is the DNAT rule, from a second walk with steps (the first has none).
	for _, f := range res.Findings {
		if f.Kind != trace.StaleEndpoint {
			continue
		}
		if len(f.Evidence) != 1 || !strings.HasPrefix(f.Evidence[0], "nat KUBE-SEP-") || !strings.Contains(f.Evidence[0], " line ") || !strings.Contains(f.Evidence[0], "-j DNAT --to-destination ") {
			t.Errorf("evidence of %s: %q, want the DNAT rule with its chain and line", f.Message, f.Evidence)
		}
	}
}

// TestCheckDualStackEndpointsBelongToTheirFamily: a dual-stack Service's IPv6 EndpointSlice is
// not the IPv4 cluster IP's; kube-proxy's IPv4 proxier never sees it. check once reported each
// IPv6 endpoint as a MissingEndpoint error of the IPv4 cluster IP and node port.
func TestCheckDualStackEndpointsBelongToTheirFamily(t *testing.T) {
	dp, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	var v6 []*discoveryv1.EndpointSlice
	for _, sl := range cl.Slices {
		if sl.Labels["kubernetes.io/service-name"] != "hostnames" {
			continue
		}
		c := sl.DeepCopy()
		c.Name += "-v6"
		c.AddressType = discoveryv1.AddressTypeIPv6
		for i := range c.Endpoints {
			c.Endpoints[i].Addresses = []string{fmt.Sprintf("fd00:10:244:1::%d", 11+i)}
		}
		v6 = append(v6, c)
	}
	if len(v6) == 0 {
		t.Fatal("the recorded objects have no EndpointSlice for hostnames")
	}
	dual := trace.NewCluster(cl.Services, append(cl.Slices, v6...), cl.Pods, cl.Nodes)
	res, err := trace.Check(context.Background(), dp, dual, dual.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tracetest.FindingKinds(res, trace.SeverityWarning); len(got) != 0 {
		t.Errorf("findings on a synced node with a second address family: %v", got)
	}
}

// TestCheckConcurrentWalks: check walks every Service port on all cores, and the result is the
// one a walk one port at a time gives: the recorded node with 200 Service ports more in
// KUBE-SERVICES (so that the chain's destination index, built by the first walk that needs it,
// is used), in iptables and in IPVS mode.
func TestCheckConcurrentWalks(t *testing.T) {
	data := tracetest.ReadFixture(t, "../../dataplane/snapshot/demo", "iptables-save.txt")
	var extra strings.Builder
	for i := range 200 {
		fmt.Fprintf(&extra, "-A KUBE-SERVICES -d 10.96.250.%d/32 -p tcp -m comment --comment \"ghost/svc-%d:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-ODX2UBAZM7RQWOIU\n", i, i)
	}
	filter, nat, _ := strings.Cut(string(data), "*nat\n")
	grown, n := filter+"*nat\n"+strings.Replace(nat, "-A KUBE-SERVICES ", extra.String()+"-A KUBE-SERVICES ", 1), 0
	_, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	res := tracetest.SameCheckConcurrently(t, func() trace.Dataplane {
		rs, err := xtables.Parse([]byte(grown))
		if err != nil {
			t.Fatal(err)
		}
		return &iptables.Dataplane{V4: rs}
	}, cl, "node1", trace.CheckScope{})
	for _, f := range res.Findings {
		if f.Kind == trace.StaleService && strings.HasPrefix(f.Service, "ghost/") {
			n++
		}
	}
	if n != 200 || res.Checked < 12 {
		t.Errorf("%d ghost Services found stale, %d ports checked; want 200 and at least 12", n, res.Checked)
	}

	_, ipvsCl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	tracetest.SameCheckConcurrently(t, func() trace.Dataplane {
		dp, _ := recorded.IPVS(t, "ipvsadm-Ln.txt")
		return dp
	}, ipvsCl, "vm1", trace.CheckScope{})
}

// TestWalkWithoutSteps: check's walks without steps give the paths, shares and verdicts of the
// walks with them, on the recorded iptables and IPVS nodes.
func TestWalkWithoutSteps(t *testing.T) {
	dp, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	tracetest.SameWithoutSteps(t, dp, cl.NodeContextFor("node1", nil))
	ipvsDP, ipvsCl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	tracetest.SameWithoutSteps(t, ipvsDP, ipvsCl.NodeContextFor("vm1", nil))
}
