package nftables_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/svctrace/svctrace/dataplane/nftjson"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/nftables"
)

// The fixture: kube-proxy v1.36.3 in nftables mode after syncing the standard scenario, recorded
// by test/e2e/record (see dataplane/snapshot/demo-nftables/README.md).
const fixture = "../../dataplane/snapshot/demo-nftables"

func load(t testing.TB) (*nftables.Dataplane, *trace.Cluster) {
	t.Helper()
	data, err := os.ReadFile(fixture + "/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := nftjson.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return &nftables.Dataplane{Rules: rs}, tracetest.LoadObjects(t, fixture+"/objects.yaml")
}

func TestPacketFlowsRecordedNftables(t *testing.T) {
	dp, cl := load(t)
	ip := func(name string) string { return tracetest.ClusterIP(t, cl, name) }
	hostnames := "10.244.1.11:9376, 10.244.1.12:9376, 10.244.1.13:9376"
	web := "10.244.1.21:8080, 10.244.2.21:8080"
	tracetest.Run(t, dp, cl, []tracetest.FlowTest{
		{Name: "pod to cluster IP: numgen random mod 3 gives exact thirds, source kept",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("hostnames"), DestPort: 80, Output: hostnames, Equal: true},
		{Name: "node to cluster IP is masqueraded (source outside the cluster CIDR)",
			SourceIP: tracetest.NodeIP, Origin: trace.FromLocalProcess, DestIP: ip("hostnames"), DestPort: 80, Output: hostnames, Masq: true},
		{Name: "wrong port on a cluster IP is rejected: nftables mode rejects unknown ports on cluster IPs",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("hostnames"), DestPort: 81, Output: "REJECT"},
		{Name: "external to node port with Cluster policy reaches both nodes' pods, masqueraded",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.NodeIP, DestPort: 30080, Output: web, Masq: true, Equal: true},
		{Name: "nftables mode accepts node ports only on the primary node IP",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.NodeExtIP, DestPort: 30080, Output: "ACCEPT"},
		{Name: "external to node port with Local policy reaches only the local pod, source kept",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.NodeIP, DestPort: 30081, Output: "10.244.1.21:8080"},
		{Name: "node-local to node port with Local policy is masqueraded and uses all endpoints",
			SourceIP: tracetest.NodeIP, Origin: trace.FromLocalProcess, DestIP: tracetest.NodeIP, DestPort: 30081, Output: web, Masq: true},
		{Name: "pod to node port with Local policy is short-circuited to the cluster-wide endpoints",
			SourceIP: tracetest.ClientPodIP, DestIP: tracetest.NodeIP, DestPort: 30081, Output: web},
		{Name: "allowed source to the load balancer IP is DNAT'ed and masqueraded",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.LBIP, DestPort: 80, Output: web, Masq: true},
		{Name: "source outside loadBalancerSourceRanges is dropped",
			SourceIP: "198.51.100.11", DestIP: tracetest.LBIP, DestPort: 80, Output: "DROP"},
		{Name: "cluster IP without endpoints is rejected",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("empty"), DestPort: 80, Output: "REJECT"},
		{Name: "node port without endpoints is rejected",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.NodeIP, DestPort: 30090, Output: "REJECT"},
		{Name: "Local policy node port without local endpoints drops external traffic",
			SourceIP: tracetest.ExternalIP, DestIP: tracetest.NodeIP, DestPort: 30083, Output: "DROP"},
		{Name: "internalTrafficPolicy Local without local endpoints drops cluster IP traffic",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("remote-itp"), DestPort: 80, Output: "DROP"},
		{Name: "session affinity: first connections split equally, later ones stick",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("sticky"), DestPort: 80, Output: hostnames, Equal: true, Affinity: 10800},
		{Name: "hairpin: the hairpin-connections set masquerades a pod reaching itself",
			SourceIP: "10.244.1.41", DestIP: ip("multi"), DestPort: 9090, Output: "10.244.1.41:9090, 10.244.1.42:9090", Hairpin: "10.244.1.41"},
		{Name: "second port of a multi-port service has its own endpoints",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("multi"), DestPort: 80, Output: "10.244.1.41:8080, 10.244.1.42:8080", Equal: true},
		{Name: "UDP service",
			SourceIP: tracetest.ClientPodIP, DestIP: ip("dns"), DestPort: 53, Proto: trace.UDP, Output: "10.244.1.51:5353, 10.244.2.52:5353", Equal: true},
	})
}

// TestCheckRecordedNodeIsClean: what kube-proxy programmed in nftables mode agrees with the API.
func TestCheckRecordedNodeIsClean(t *testing.T) {
	dp, cl := load(t)
	res, err := trace.Check(context.Background(), dp, cl, cl.NodeContextFor("node1", nil), trace.CheckScope{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Findings {
		if f.Severity != trace.SeverityInfo {
			t.Errorf("%s %s: %s", f.Kind, f.Service, f.Message)
		}
	}
}

// TestInterfaceDetectorDecidesBySource: with detectLocalMode InterfaceNamePrefix kube-proxy's
// masquerade rule reads `iifname != "vp*"` instead of `ip saddr != CLUSTER-CIDR`. With no
// --in-interface, a packet from a pod on this node is taken to arrive on a pod interface (source
// kept), an outside one not, and one a process on the node sends has no input interface (both
// masqueraded); the walk once left every such rule unmatched.
func TestInterfaceDetectorDecidesBySource(t *testing.T) {
	data, err := os.ReadFile(fixture + "/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	cidr := `{"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.244.0.0", "len": 16}}`
	edited := strings.Replace(string(data), cidr, `{"meta": {"key": "iifname"}}, "right": "vp*"`, 1)
	if edited == string(data) {
		t.Fatal("the recorded node has no cluster-CIDR masquerade rule")
	}
	rs, err := nftjson.Parse([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	_, cl := load(t)
	ip := tracetest.ClusterIP(t, cl, "hostnames")
	hostnames := "10.244.1.11:9376, 10.244.1.12:9376, 10.244.1.13:9376"
	tracetest.Run(t, &nftables.Dataplane{Rules: rs}, cl, []tracetest.FlowTest{
		{Name: "a pod on this node: source kept", SourceIP: tracetest.ClientPodIP, DestIP: ip, DestPort: 80, Output: hostnames},
		{Name: "a pod on another node (routed in, not on a pod interface here): masqueraded", SourceIP: "10.244.2.7", DestIP: ip, DestPort: 80, Output: hostnames, Masq: true},
		{Name: "outside the cluster: masqueraded", SourceIP: tracetest.ExternalIP, DestIP: ip, DestPort: 80, Output: hostnames, Masq: true},
		{Name: "a process on the node: masqueraded", SourceIP: tracetest.NodeIP, Origin: trace.FromLocalProcess, DestIP: ip, DestPort: 80, Output: hostnames, Masq: true},
	})
}

// TestCheckConcurrentWalks: check walks every Service port on all cores; the named sets' index,
// built by the first walk that looks one up, gives the same result as walks one at a time.
func TestCheckConcurrentWalks(t *testing.T) {
	_, cl := load(t)
	tracetest.SameCheckConcurrently(t, func() trace.Dataplane { dp, _ := load(t); return dp }, cl, "node1", trace.CheckScope{})
}

// TestWalkWithoutSteps: check's walks without steps give the paths, shares and verdicts of the
// walks with them.
func TestWalkWithoutSteps(t *testing.T) {
	dp, cl := load(t)
	tracetest.SameWithoutSteps(t, dp, cl.NodeContextFor("node1", nil))
}
