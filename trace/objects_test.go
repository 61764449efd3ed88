package trace

import (
	"net/netip"
	"strings"
	"testing"
)

// TestObjectsAreValidated: values the API server would refuse are refused when read from a file,
// with the object named, instead of panicking or wrapping around (port 70000 became 4464).
func TestObjectsAreValidated(t *testing.T) {
	svc := func(spec string) string {
		return `{"kind":"Service","apiVersion":"v1","metadata":{"namespace":"default","name":"web"},"spec":` + spec + `}`
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"a cluster IP that is not one", svc(`{"clusterIP":"999.1.2.3","ports":[{"port":80}]}`), `Service default/web: cluster IP "999.1.2.3" is not an IP address`},
		{"a port above 65535", svc(`{"clusterIP":"10.96.0.9","ports":[{"port":70000}]}`), "port 70000 (node port 0) is not between 1 and 65535"},
		{"a negative node port", svc(`{"clusterIP":"10.96.0.9","ports":[{"port":80,"nodePort":-1}]}`), "node port -1"},
		{"a port name with a quote and a line break", svc(`{"clusterIP":"10.96.0.9","ports":[{"name":"a\" -j DNAT\n","port":80}]}`), "port name"},
		{"a namespace that is a path", `{"kind":"Service","apiVersion":"v1","metadata":{"namespace":"../x","name":"web"},"spec":{}}`, `namespace "../x"`},
		{"an endpoint that is not an address", `{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"namespace":"default","name":"web-1"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.300"]}]}`, "EndpointSlice default/web-1: endpoint address"},
		{"an endpoint port above 65535", `{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"namespace":"default","name":"web-1"},"addressType":"IPv4","ports":[{"port":65536}]}`, "port 65536"},
		{"a JSON object followed by a broken one", `{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1"}} {"kind": "Pod", "metadata": [`, "document 2"},
		{"a node address that is not one", `{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":"x"}]}}`, "Node n1: address"},
	} {
		_, err := DecodeObjects([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := DecodeObjects([]byte(svc(`{"clusterIP":"None","ports":[{"name":"http","port":80,"nodePort":30080}]}`))); err != nil {
		t.Errorf("a valid headless Service: %v", err)
	}
}

// TestNodeWithAddress: a machine whose hostname is not its Node's name (kube-proxy's
// --hostname-override) is the one Node that has one of its addresses; none or two is no answer.
func TestNodeWithAddress(t *testing.T) {
	node := func(name, ip string) string {
		return `{"kind":"Node","apiVersion":"v1","metadata":{"name":"` + name + `"},"status":{"addresses":[{"type":"InternalIP","address":"` + ip + `"},{"type":"Hostname","address":"` + name + `"}]}}`
	}
	cl, err := DecodeObjects([]byte(node("node1", "172.31.250.2") + "\n---\n" + node("node2", "172.31.250.6")))
	if err != nil {
		t.Fatal(err)
	}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	for _, tc := range []struct {
		mine []netip.Addr
		want string
	}{
		{addrs("127.0.0.1", "10.244.1.1", "172.31.250.2"), "node1 172.31.250.2"},
		{addrs("::ffff:172.31.250.6"), "node2 172.31.250.6"},
		{addrs("127.0.0.1", "10.0.0.9"), ""},
		{addrs("172.31.250.2", "172.31.250.6"), ""},
	} {
		name, a, ok := cl.NodeWithAddress(tc.mine)
		got := ""
		if ok {
			got = name + " " + a.String()
		}
		if got != tc.want {
			t.Errorf("%v: %q, want %q", tc.mine, got, tc.want)
		}
	}
}
