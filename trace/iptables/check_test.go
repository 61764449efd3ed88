package iptables_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
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
