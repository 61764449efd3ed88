package naming

import "testing"

// Names as the recorded nodes (dataplane/snapshot/demo*) carry them.
func TestNames(t *testing.T) {
	for rule, want := range map[string]string{
		`-A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment "default/hostnames:default cluster IP" -m tcp --dport 80 -j KUBE-SVC-ODX2UBAZM7RQWOIU`: "default/hostnames:default cluster IP",
		`-A KUBE-SEP-X -m comment --comment default/dns:dns -j DNAT`:                                                                                           "default/dns:dns",
		`-A KUBE-SEP-X -p tcp -j DNAT`: "",
	} {
		if got := RuleComment(rule); got != want {
			t.Errorf("RuleComment(%q) = %q, want %q", rule, got, want)
		}
	}
	if ns, name, port, ok := NftChainService("endpoint-RTIENKNQ-default/sticky/tcp/default__10.244.1.11/9376"); !ok || ns != "default" || name != "sticky" || port != "default" {
		t.Errorf("endpoint chain: %q %q %q %v", ns, name, port, ok)
	}
	if _, _, _, ok := NftChainService("services"); ok {
		t.Error("a chain of kube-proxy's table that is not a Service's was read as one")
	}
	if !IsServiceChain("KUBE-SVC-ODX2UBAZM7RQWOIU") || IsServiceChain("KUBE-SERVICES") || IsServiceChain(OldLocalChainPrefix+"X") {
		t.Error("IsServiceChain")
	}
}
