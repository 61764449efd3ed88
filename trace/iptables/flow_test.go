package iptables_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"regexp"
	"testing"

	"github.com/svctrace/svctrace/dataplane/xtables"
	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
	"github.com/svctrace/svctrace/trace/iptables"
)

func clusterIP(t *testing.T, cl *trace.Cluster, name string) string {
	return tracetest.ClusterIP(t, cl, name)
}

const (
	nodeIP      = tracetest.NodeIP
	nodeExtIP   = tracetest.NodeExtIP
	clientPodIP = tracetest.ClientPodIP
	externalIP  = tracetest.ExternalIP
	lbIP        = tracetest.LBIP
)

type packetFlowTest = tracetest.FlowTest

func TestPacketFlowsRecordedIptables(t *testing.T) {
	dp, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	runScenarioFlows(t, dp, cl)
}

// commentRE matches kube-proxy's rule comments, quoted or not.
var commentRE = regexp.MustCompile(` -m comment --comment ("[^"]*"|\S+)`)

// TestPacketFlowsWithoutComments drops every rule comment, as kube-proxy does above 1000
// endpoints: the same flows must give the same answers, joined with the API by address alone.
func TestPacketFlowsWithoutComments(t *testing.T) {
	dump, err := os.ReadFile("../../dataplane/snapshot/demo/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	stripped := commentRE.ReplaceAll(dump, nil)
	if bytes.Contains(stripped, []byte("--comment")) {
		t.Fatal("comments left in the dump")
	}
	rs, err := xtables.Parse(stripped)
	if err != nil {
		t.Fatal(err)
	}
	_, cl := recorded.IPTables(t, "../../dataplane/snapshot/demo")
	runScenarioFlows(t, &iptables.Dataplane{V4: rs}, cl)
	node := cl.NodeContextFor("node1", nil)
	res, err := trace.Run(context.Background(), &iptables.Dataplane{V4: rs}, cl, trace.Query{Node: node, Packet: trace.Packet{
		Src: netip.MustParseAddr(clientPodIP), Dst: netip.MustParseAddr(clusterIP(t, cl, "hostnames")), DstPort: 80, Protocol: trace.TCP}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Service == nil || res.Service.Name != "hostnames" || res.Backends[0].Pod == nil {
		t.Errorf("without comments the Service and pods still come from the API: %+v %+v", res.Service, res.Backends)
	}
}

func runScenarioFlows(t *testing.T, dp *iptables.Dataplane, cl *trace.Cluster) {
	hostnames := "10.244.1.11:9376, 10.244.1.12:9376, 10.244.1.13:9376"
	web := "10.244.1.21:8080, 10.244.2.21:8080"
	tracetest.Run(t, dp, cl, []packetFlowTest{
		{Name: "pod to cluster IP reaches the three ready pods in equal shares, source kept",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "hostnames"), DestPort: 80, Output: hostnames, Equal: true},
		{Name: "node to cluster IP is masqueraded (source outside the cluster CIDR)",
			SourceIP: nodeIP, Origin: trace.FromLocalProcess, DestIP: clusterIP(t, cl, "hostnames"), DestPort: 80, Output: hostnames, Masq: true},
		{Name: "wrong port on a cluster IP matches no service rule",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "hostnames"), DestPort: 81, Output: "ACCEPT"},
		{Name: "external to node port with Cluster policy reaches both nodes' pods, masqueraded",
			SourceIP: externalIP, DestIP: nodeExtIP, DestPort: 30080, Output: web, Masq: true, Equal: true},
		{Name: "external to node port with Local policy reaches only the local pod, source kept",
			SourceIP: externalIP, DestIP: nodeExtIP, DestPort: 30081, Output: "10.244.1.21:8080"},
		{Name: "node-local to node port with Local policy is masqueraded and uses all endpoints",
			SourceIP: nodeIP, Origin: trace.FromLocalProcess, DestIP: nodeIP, DestPort: 30081, Output: web, Masq: true},
		{Name: "pod to node port with Local policy is short-circuited to the cluster-wide endpoints",
			SourceIP: clientPodIP, DestIP: nodeIP, DestPort: 30081, Output: web},
		{Name: "allowed source to the load balancer IP is DNAT'ed and masqueraded",
			SourceIP: externalIP, DestIP: lbIP, DestPort: 80, Output: web, Masq: true},
		{Name: "source outside loadBalancerSourceRanges is dropped by KUBE-PROXY-FIREWALL",
			SourceIP: "198.51.100.11", DestIP: lbIP, DestPort: 80, Output: "DROP"},
		{Name: "cluster IP without endpoints is rejected",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "empty"), DestPort: 80, Output: "REJECT"},
		{Name: "node port without endpoints is rejected",
			SourceIP: externalIP, DestIP: nodeExtIP, DestPort: 30090, Output: "REJECT"},
		{Name: "Local policy node port without local endpoints drops external traffic",
			SourceIP: externalIP, DestIP: nodeExtIP, DestPort: 30083, Output: "DROP"},
		{Name: "internalTrafficPolicy Local without local endpoints drops cluster IP traffic",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "remote-itp"), DestPort: 80, Output: "DROP"},
		{Name: "session affinity still splits first connections equally",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "sticky"), DestPort: 80, Output: hostnames, Equal: true, Affinity: 10800},
		{Name: "hairpin: a pod reaching its own service is masqueraded when it picks itself",
			SourceIP: "10.244.1.41", DestIP: clusterIP(t, cl, "multi"), DestPort: 9090, Output: "10.244.1.41:9090, 10.244.1.42:9090", Hairpin: "10.244.1.41"},
		{Name: "second port of a multi-port service has its own endpoints",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "multi"), DestPort: 80, Output: "10.244.1.41:8080, 10.244.1.42:8080", Equal: true},
		{Name: "UDP service",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "dns"), DestPort: 53, Proto: trace.UDP, Output: "10.244.1.51:5353, 10.244.2.52:5353", Equal: true},
		{Name: "TCP to a UDP-only service port matches nothing",
			SourceIP: clientPodIP, DestIP: clusterIP(t, cl, "dns"), DestPort: 53, Output: "ACCEPT"},
	})
}
