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
		Service: &ServiceRef{Namespace: "default", Name: "hostnames", Port: "default"},
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
	if r := Balance(threeBackends(), nil, short); r.Diagnosis != Balanced || r.ChiSquareP < 0.5 {
		t.Errorf("short connections only: %s (p=%v): %s", r.Diagnosis, r.ChiSquareP, r.Message)
	}
	sticky := append(append([]Conn(nil), short...), conn("10.244.1.99", 1, 100000))
	r := Balance(threeBackends(), nil, sticky)
	if r.Diagnosis != ConnectionStickiness || !strings.Contains(r.Message, "10.244.1.99") || len(r.Recommendations) == 0 {
		t.Errorf("one heavy connection: %s: %s", r.Diagnosis, r.Message)
	}
	var skewed []Conn
	for i := 0; i < 90; i++ {
		skewed = append(skewed, conn("10.244.1.41", min(i%6, 2), 300))
	}
	if r := Balance(threeBackends(), nil, skewed); r.Diagnosis != SkewedRules {
		t.Errorf("connections not following the shares: %s (p=%v)", r.Diagnosis, r.ChiSquareP)
	}
	unequal := threeBackends()
	unequal.Backends[0].Probability, unequal.Backends[1].Probability = 0.6, 0.0666
	if r := Balance(unequal, nil, short); r.Diagnosis != SkewedRules || !strings.Contains(r.Message, "own shares") {
		t.Errorf("unequal rules: %s: %s", r.Diagnosis, r.Message)
	}
	if r := Balance(threeBackends(), nil, nil); r.Diagnosis != TooLittleTraffic {
		t.Errorf("no traffic: %s", r.Diagnosis)
	}
}
