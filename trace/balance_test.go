package trace

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

func TestChiSquareSurvival(t *testing.T) {
	// Reference values of the chi-square distribution's upper tail.
	for _, tc := range []struct{ x, k, p float64 }{
		{3.841, 1, 0.05}, {5.991, 2, 0.05}, {13.816, 2, 0.001}, {0.0, 2, 1}, {2, 2, math.Exp(-1)},
	} {
		if got := chiSquareSurvival(tc.x, tc.k); math.Abs(got-tc.p) > 1e-3 {
			t.Errorf("Q(%v; %v) = %v, want %v", tc.x, tc.k, got, tc.p)
		}
	}
}

func threeBackends() *Result {
	return &Result{Node: "node1", Packet: PacketInfo{Dst: "10.96.10.10", Port: 80, Protocol: "tcp"},
		Service:  &ServiceRef{Namespace: "default", Name: "hostnames", Port: "default"},
		Backends: []Backend{{IP: "10.244.1.11", Port: 9376, Probability: 1.0 / 3}, {IP: "10.244.1.12", Port: 9376, Probability: 1.0 / 3}, {IP: "10.244.1.13", Port: 9376, Probability: 1.0 / 3}}}
}

func conn(client string, backend int, bytes uint64) Conn {
	return Conn{Protocol: TCP, Client: netip.MustParseAddr(client), Dst: netip.MustParseAddrPort("10.96.10.10:80"),
		Backend: netip.AddrPortFrom(netip.MustParseAddr("10.244.1."+[]string{"11", "12", "13"}[backend]), 9376), Bytes: bytes}
}

func TestBalanceDiagnoses(t *testing.T) {
	var short []Conn
	for i := 0; i < 90; i++ {
		short = append(short, conn("10.244.1.41", i%3, 300))
	}
	if r := Balance(threeBackends(), nil, short, nil); r.Diagnosis != Balanced || r.ChiSquareP < 0.5 {
		t.Errorf("short connections only: %s (p=%v): %s", r.Diagnosis, r.ChiSquareP, r.Message)
	}
	sticky := append(append([]Conn(nil), short...), conn("10.244.1.99", 1, 100000))
	r := Balance(threeBackends(), nil, sticky, nil)
	if r.Diagnosis != ConnectionStickiness || !strings.Contains(r.Message, "10.244.1.99") || len(r.Recommendations) == 0 {
		t.Errorf("one heavy connection: %s: %s", r.Diagnosis, r.Message)
	}
	var skewed []Conn
	for i := 0; i < 90; i++ {
		skewed = append(skewed, conn("10.244.1.41", min(i%6, 2), 300))
	}
	if r := Balance(threeBackends(), nil, skewed, nil); r.Diagnosis != SkewedRules {
		t.Errorf("connections not following the shares: %s (p=%v)", r.Diagnosis, r.ChiSquareP)
	}
	// 48/22/20 is p=0.0003: healthy random DNAT lands this far out once in 3,400 windows, so it
	// is not called skewed (SkewP).
	var unlucky []Conn
	for i, n := range []int{48, 22, 20} {
		for range n {
			unlucky = append(unlucky, conn("10.244.1.41", i, 300))
		}
	}
	if r := Balance(threeBackends(), nil, unlucky, nil); r.Diagnosis != Balanced || r.ChiSquareP > 0.001 {
		t.Errorf("an unlucky but healthy window: %s (p=%v): %s", r.Diagnosis, r.ChiSquareP, r.Message)
	}
	unequal := threeBackends()
	unequal.Backends[0].Probability, unequal.Backends[1].Probability = 0.6, 0.0666
	if r := Balance(unequal, nil, short, nil); r.Diagnosis != SkewedRules || !strings.Contains(r.Message, "own shares") {
		t.Errorf("unequal rules: %s: %s", r.Diagnosis, r.Message)
	}
	// The dataplane's counters, when given, are what the split is tested on.
	counters := map[string]uint64{"10.244.1.11:9376": 300, "10.244.1.12:9376": 20, "10.244.1.13:9376": 280}
	if r := Balance(threeBackends(), nil, short, counters); r.Diagnosis != SkewedRules || *r.Backends[1].NewConnections != 20 {
		t.Errorf("skewed counters: %s (p=%v)", r.Diagnosis, r.ChiSquareP)
	}
	if r := Balance(threeBackends(), nil, nil, nil); r.Diagnosis != TooLittleTraffic {
		t.Errorf("no traffic: %s", r.Diagnosis)
	}
}

// nodeHinted gives each endpoint the node hint the EndpointSlice controller sets for
// trafficDistribution PreferSameNode: its own node.
func nodeHinted(eps []Endpoint) []Endpoint {
	out := append([]Endpoint(nil), eps...)
	for i := range out {
		out[i].Nodes = []string{out[i].NodeName}
	}
	return out
}

func TestUsableFollowsKubeProxy(t *testing.T) {
	ep := func(ip, node string, ready, serving, terminating bool, zones ...string) Endpoint {
		return Endpoint{Addr: netip.MustParseAddrPort(ip + ":80"), NodeName: node, Ready: ready, Serving: serving, Terminating: terminating, Zones: zones}
	}
	names := func(es []Endpoint) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Addr.Addr().String())
		}
		return strings.Join(s, ",")
	}
	eps := []Endpoint{ep("10.0.0.1", "n1", true, true, false, "a"), ep("10.0.0.2", "n2", true, true, false, "b"), ep("10.0.0.3", "n1", false, true, true, "a")}
	for _, tc := range []struct {
		name, node, zone string
		local            bool
		eps              []Endpoint
		want             string
	}{
		{"ready ones", "n1", "", false, eps, "10.0.0.1,10.0.0.2"},
		{"local policy keeps the node's own", "n2", "", true, eps, "10.0.0.2"},
		{"zone hints for the node's zone", "n1", "a", false, eps, "10.0.0.1"},
		{"hints for no endpoint in the zone are ignored", "n1", "c", false, eps, "10.0.0.1,10.0.0.2"},
		{"serving terminating ones when none is ready", "n1", "", false, eps[2:], "10.0.0.3"},
		{"not hinted everywhere: hints ignored", "n1", "a", false, append([]Endpoint{ep("10.0.0.4", "n3", true, true, false)}, eps[:2]...), "10.0.0.4,10.0.0.1,10.0.0.2"},
		// trafficDistribution PreferSameNode: node hints win over zone hints (kube-proxy 1.34+).
		{"node hints for this node", "n2", "a", false, nodeHinted(eps), "10.0.0.2"},
		{"node hints for no endpoint on this node: zone hints", "n9", "a", false, nodeHinted(eps), "10.0.0.1"},
		{"node hints on some endpoints only: ignored", "n2", "", false, append(nodeHinted(eps[:1]), eps[1]), "10.0.0.1,10.0.0.2"},
	} {
		if got := names(Usable(tc.eps, tc.node, tc.zone, tc.local)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// Across nodes: each node alone looks balanced enough, or too quiet to judge, but the same heavy
// client on one of them dominates the Service's traffic as a whole; counters add up only when
// every node has them.
func TestBalanceNodesMergesWindows(t *testing.T) {
	var short []Conn
	for i := 0; i < 60; i++ {
		short = append(short, conn("10.244.1.41", i%3, 300))
	}
	n2 := threeBackends()
	n2.Node = "node2"
	// node2's rules reach only two of the backends (internalTrafficPolicy Local, say).
	n2.Backends = []Backend{{IP: "10.244.1.11", Port: 9376, Probability: 0.5}, {IP: "10.244.1.12", Port: 9376, Probability: 0.5}}
	heavy := []Conn{conn("10.244.1.99", 1, 500000), conn("10.244.1.41", 0, 300), conn("10.244.1.41", 0, 300)}
	r := BalanceNodes(nil, []NodeWindow{
		{Trace: threeBackends(), Conns: short, Counters: map[string]uint64{"10.244.1.11:9376": 20, "10.244.1.12:9376": 20, "10.244.1.13:9376": 20}},
		{Trace: n2, Conns: heavy},
	})
	if len(r.Nodes) != 2 || r.Nodes[0].Diagnosis != Balanced || r.Nodes[1].Diagnosis != TooLittleTraffic || r.Nodes[1].Connections != 3 {
		t.Fatalf("per node: %+v", r.Nodes)
	}
	o := r.Overall
	if o.Node != "all nodes" || len(o.Backends) != 3 {
		t.Fatalf("overall backends: %+v", o.Backends)
	}
	// Expected shares: the mean of each node's (1/3 and 1/2; 1/3 and 1/2; 1/3 and none).
	for i, want := range []float64{5.0 / 12, 5.0 / 12, 1.0 / 6} {
		if math.Abs(o.Backends[i].Expected-want) > 1e-9 {
			t.Errorf("backend %d expected %v, want %v", i, o.Backends[i].Expected, want)
		}
	}
	if o.Backends[0].Connections != 22 || o.Backends[0].NewConnections != nil {
		t.Errorf("merged backend 0: %+v (node2 has no counters, so none are used)", o.Backends[0])
	}
	if o.Diagnosis != ConnectionStickiness || !strings.Contains(o.Message, "10.244.1.99") {
		t.Errorf("overall: %s: %s", o.Diagnosis, o.Message)
	}
}

// TestBalanceHugeCounters: byte counts near 2^64 (a wrapped or forged conntrack table) once
// overflowed the total and showed every backend at 100%. The shares still sum to 1.
func TestBalanceHugeCounters(t *testing.T) {
	conns := []Conn{conn("10.244.1.41", 0, math.MaxUint64), conn("10.244.1.42", 1, math.MaxUint64), conn("10.244.1.43", 2, math.MaxUint64-5)}
	r := Balance(threeBackends(), nil, conns, nil)
	sum := 0.0
	for _, b := range r.Backends {
		if b.ByteShare > 0.34 || b.ByteShare < 0.33 {
			t.Errorf("backend %s has byte share %v, want a third", b.Backend, b.ByteShare)
		}
		sum += b.ByteShare
	}
	for _, c := range r.Clients {
		if c.ByteShare > 0.34 {
			t.Errorf("client %s has byte share %v", c.IP, c.ByteShare)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("byte shares sum to %v", sum)
	}
}
