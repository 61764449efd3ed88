package trace

import (
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
