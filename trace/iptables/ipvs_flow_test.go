package iptables_test

import (
	"context"
	"testing"

	"github.com/svctrace/svctrace/test/recorded"
	"github.com/svctrace/svctrace/test/tracetest"
	"github.com/svctrace/svctrace/trace"
)

func TestPacketFlowsRecordedIPVS(t *testing.T) {
	// The three forms of the IPVS table must give the same answers.
	for _, table := range []string{"ipvsadm-Sn.txt", "ipvsadm-Ln.txt", "proc-net-ip_vs.txt"} {
		t.Run(table, func(t *testing.T) {
			dp, cl := recorded.IPVS(t, table)
			web := "10.244.3.11:8080, 10.244.3.12:8080, 10.244.3.13:8080"
			const vmIP, client, ext = "10.0.2.15", "10.244.3.99", "198.51.100.10"
			affinity := 10800
			if table == "proc-net-ip_vs.txt" {
				affinity = 0 // /proc prints the persistence timeout in jiffies: persistent, timeout unknown
			}
			tests := []tracetest.FlowTest{
				{Name: "pod to cluster IP: rr over three real servers, source kept",
					SourceIP: client, DestIP: "10.96.30.10", DestPort: 80, Output: web, Equal: true},
				{Name: "node to cluster IP is masqueraded",
					SourceIP: vmIP, Origin: trace.FromLocalProcess, DestIP: "10.96.30.10", DestPort: 80, Output: web, Masq: true, Equal: true},
				{Name: "wrong port on a cluster IP is rejected by KUBE-IPVS-FILTER",
					SourceIP: client, DestIP: "10.96.30.10", DestPort: 81, Output: "REJECT"},
				{Name: "node port with Cluster policy from outside is masqueraded",
					SourceIP: ext, DestIP: vmIP, DestPort: 30200, Output: web, Masq: true, Equal: true},
				{Name: "node port with Local policy keeps the source and uses the local endpoint",
					SourceIP: ext, DestIP: vmIP, DestPort: 30201, Output: "10.244.3.11:8080"},
				{Name: "a virtual server without real servers refuses the connection",
					SourceIP: client, DestIP: "10.96.30.30", DestPort: 80, Output: "REJECT"},
				{Name: "Local policy without local endpoints: IPVS still lists the remote one",
					SourceIP: ext, DestIP: vmIP, DestPort: 30203, Output: "10.244.2.77:8080"},
				{Name: "hairpin: KUBE-LOOP-BACK masquerades a pod reaching itself",
					SourceIP: "10.244.3.11", DestIP: "10.96.30.10", DestPort: 80, Output: web, Hairpin: "10.244.3.11", Equal: true},
			}
			if affinity > 0 {
				tests = append(tests, tracetest.FlowTest{Name: "persistence is session affinity",
					SourceIP: client, DestIP: "10.96.30.40", DestPort: 80, Output: web, Equal: true, Affinity: affinity})
			}
			tracetest.RunOnNode(t, dp, cl, "vm1", tests)
		})
	}
}

// TestCheckIPVSFindsTheLocalPolicyBlackhole: in the recorded IPVS node, the Local-policy node
// port of a Service whose only endpoint is on another node still lists that endpoint as a real
// server (kube-proxy's IPVS mode does this); everything else agrees with the API.
func TestCheckIPVSFindsTheLocalPolicyBlackhole(t *testing.T) {
	dp, cl := recorded.IPVS(t, "ipvsadm-Ln.txt")
	res, err := trace.Check(context.Background(), dp, cl, cl.NodeContextFor("vm1", nil), trace.CheckScope{Namespace: "ipvs"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range res.Findings {
		if f.Severity != trace.SeverityInfo {
			got = append(got, f.Kind+" "+f.Service)
		}
	}
	if len(got) != 1 || got[0] != "LocalPolicyBlackhole ipvs/vmfar-local:http" {
		t.Fatalf("findings %v", got)
	}
}
