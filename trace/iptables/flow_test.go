package iptables_test

import (
	"bytes"
	"math"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	ipread "github.com/svctrace/svctrace/dataplane/iptables"
	"github.com/svctrace/svctrace/trace"
	xt "github.com/svctrace/svctrace/trace/iptables"
)

// loadScenario reads a dump and the API objects recorded from the real kube-proxy by
// test/e2e/record (see testdata/README.md).
func loadScenario(t testing.TB, dir string) (*xt.Dataplane, *trace.Cluster) {
	t.Helper()
	dump, err := os.ReadFile(dir + "/iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ipread.Parse(dump)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := os.ReadFile(dir + "/objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := trace.DecodeObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	return &xt.Dataplane{V4: rs}, cl
}

func clusterIP(t *testing.T, cl *trace.Cluster, name string) string {
	t.Helper()
	s := cl.Service("default", name)
	if s == nil {
		t.Fatalf("fixture has no service default/%s", name)
	}
	return s.Spec.ClusterIP
}

// packetFlowTest has the shape of kube-proxy's own runPacketFlowTests cases.
type packetFlowTest struct {
	name     string
	sourceIP string
	origin   trace.Origin
	destIP   string
	destPort uint16
	proto    trace.Protocol
	// output lists the DNAT destinations (sorted, comma-separated), or REJECT / DROP / ACCEPT.
	output string
	masq   bool
	// hairpin names the one backend that is masqueraded when masq is false (the source itself).
	hairpin string
	// equal asks that every backend gets the same share.
	equal bool
}

const (
	nodeIP      = "172.31.250.2"
	nodeExtIP   = "198.51.100.1"
	clientPodIP = "10.244.1.99"
	externalIP  = "198.51.100.10"
	lbIP        = "203.0.113.100"
)

func runPacketFlowTests(t *testing.T, dp *xt.Dataplane, cl *trace.Cluster, tests []packetFlowTest) {
	node := cl.NodeContextFor("node1", nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto := tc.proto
			if proto == 0 {
				proto = trace.TCP
			}
			pkt := trace.Packet{Src: netip.MustParseAddr(tc.sourceIP), Dst: netip.MustParseAddr(tc.destIP),
				DstPort: tc.destPort, Protocol: proto, Origin: tc.origin}
			res, err := trace.Run(dp, cl, trace.Query{Packet: pkt, Node: node})
			if err != nil {
				t.Fatal(err)
			}
			total := 0.0
			for _, v := range res.Verdicts {
				total += v.Probability
			}
			if math.Abs(total-1) > 1e-9 {
				t.Errorf("verdict probabilities sum to %v, want 1", total)
			}
			var got []string
			for _, b := range res.Backends {
				got = append(got, netip.AddrPortFrom(netip.MustParseAddr(b.IP), b.Port).String())
				want := tc.masq || tc.hairpin == b.IP
				if b.Masquerade != want {
					t.Errorf("backend %s:%d masquerade = %v (%s), want %v", b.IP, b.Port, b.Masquerade, b.MasqueradeReason, want)
				}
				if tc.equal && math.Abs(b.Probability-1/float64(len(res.Backends))) > 1e-6 {
					t.Errorf("backend %s share %v, want 1/%d", b.IP, b.Probability, len(res.Backends))
				}
			}
			sort.Strings(got)
			out := strings.Join(got, ", ")
			if len(got) == 0 {
				out = string(res.Verdicts[0].Verdict)
			} else if len(res.Verdicts) > 1 {
				t.Errorf("mixed verdicts %+v", res.Verdicts)
			}
			if out != tc.output {
				t.Errorf("output %q, want %q (verdicts %+v)", out, tc.output, res.Verdicts)
			}
		})
	}
}

func TestPacketFlowsRecordedIptables(t *testing.T) {
	dp, cl := loadScenario(t, "../../dataplane/snapshot/demo")
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
	rs, err := ipread.Parse(stripped)
	if err != nil {
		t.Fatal(err)
	}
	_, cl := loadScenario(t, "../../dataplane/snapshot/demo")
	runScenarioFlows(t, &xt.Dataplane{V4: rs}, cl)
	node := cl.NodeContextFor("node1", nil)
	res, err := trace.Run(&xt.Dataplane{V4: rs}, cl, trace.Query{Node: node, Packet: trace.Packet{
		Src: netip.MustParseAddr(clientPodIP), Dst: netip.MustParseAddr(clusterIP(t, cl, "hostnames")), DstPort: 80, Protocol: trace.TCP}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Service == nil || res.Service.Name != "hostnames" || res.Backends[0].Pod == nil {
		t.Errorf("without comments the Service and pods still come from the API: %+v %+v", res.Service, res.Backends)
	}
}

func runScenarioFlows(t *testing.T, dp *xt.Dataplane, cl *trace.Cluster) {
	hostnames := "10.244.1.11:9376, 10.244.1.12:9376, 10.244.1.13:9376"
	web := "10.244.1.21:8080, 10.244.2.21:8080"
	runPacketFlowTests(t, dp, cl, []packetFlowTest{
		{name: "pod to cluster IP reaches the three ready pods in equal shares, source kept",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "hostnames"), destPort: 80, output: hostnames, equal: true},
		{name: "node to cluster IP is masqueraded (source outside the cluster CIDR)",
			sourceIP: nodeIP, origin: trace.FromLocalProcess, destIP: clusterIP(t, cl, "hostnames"), destPort: 80, output: hostnames, masq: true},
		{name: "wrong port on a cluster IP matches no service rule",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "hostnames"), destPort: 81, output: "ACCEPT"},
		{name: "external to node port with Cluster policy reaches both nodes' pods, masqueraded",
			sourceIP: externalIP, destIP: nodeExtIP, destPort: 30080, output: web, masq: true, equal: true},
		{name: "external to node port with Local policy reaches only the local pod, source kept",
			sourceIP: externalIP, destIP: nodeExtIP, destPort: 30081, output: "10.244.1.21:8080"},
		{name: "node-local to node port with Local policy is masqueraded and uses all endpoints",
			sourceIP: nodeIP, origin: trace.FromLocalProcess, destIP: nodeIP, destPort: 30081, output: web, masq: true},
		{name: "pod to node port with Local policy is short-circuited to the cluster-wide endpoints",
			sourceIP: clientPodIP, destIP: nodeIP, destPort: 30081, output: web},
		{name: "allowed source to the load balancer IP is DNAT'ed and masqueraded",
			sourceIP: externalIP, destIP: lbIP, destPort: 80, output: web, masq: true},
		{name: "source outside loadBalancerSourceRanges is dropped by KUBE-PROXY-FIREWALL",
			sourceIP: "198.51.100.11", destIP: lbIP, destPort: 80, output: "DROP"},
		{name: "cluster IP without endpoints is rejected",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "empty"), destPort: 80, output: "REJECT"},
		{name: "node port without endpoints is rejected",
			sourceIP: externalIP, destIP: nodeExtIP, destPort: 30090, output: "REJECT"},
		{name: "Local policy node port without local endpoints drops external traffic",
			sourceIP: externalIP, destIP: nodeExtIP, destPort: 30083, output: "DROP"},
		{name: "internalTrafficPolicy Local without local endpoints drops cluster IP traffic",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "remote-itp"), destPort: 80, output: "DROP"},
		{name: "session affinity still splits first connections equally",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "sticky"), destPort: 80, output: hostnames, equal: true},
		{name: "hairpin: a pod reaching its own service is masqueraded when it picks itself",
			sourceIP: "10.244.1.41", destIP: clusterIP(t, cl, "multi"), destPort: 9090, output: "10.244.1.41:9090, 10.244.1.42:9090", hairpin: "10.244.1.41"},
		{name: "second port of a multi-port service has its own endpoints",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "multi"), destPort: 80, output: "10.244.1.41:8080, 10.244.1.42:8080", equal: true},
		{name: "UDP service",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "dns"), destPort: 53, proto: trace.UDP, output: "10.244.1.51:5353, 10.244.2.52:5353", equal: true},
		{name: "TCP to a UDP-only service port matches nothing",
			sourceIP: clientPodIP, destIP: clusterIP(t, cl, "dns"), destPort: 53, output: "ACCEPT"},
	})
}
