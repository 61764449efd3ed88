package trace

import (
	"encoding/json"
	"fmt"
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

// TestDecodeObjectsListShapes: the scan that finds a List's items and their kinds without
// unmarshalling the List reads what encoding/json would: nested Lists, kinds in any case or with
// escapes, a null items, a nested targetRef kind before the top-level one; and the error is the
// first bad object's in the file's order even though the objects are decoded on all cores.
func TestDecodeObjectsListShapes(t *testing.T) {
	svc := func(name string) string {
		return `{"metadata":{"namespace":"default","name":"` + name + `"},"kind":"Service","spec":{"clusterIP":"10.96.0.9","ports":[{"port":80}]}}`
	}
	slice := `{"endpoints":[{"addresses":["10.0.0.1"],"targetRef":{"kind":"Pod","name":"p"}}],"metadata":{"namespace":"default","name":"web-1"},"addressType":"IPv4","kind":"EndpointSlice"}`
	list := func(items ...string) string {
		return `{"apiVersion":"v1","items":[` + strings.Join(items, ",\n ") + `],"kind":"List"}`
	}
	cl, err := DecodeObjects([]byte(list(svc("a"), list(svc("b"), slice), `{"kind":"ConfigMap"}`, `{"KIND":"Ser\u0076ice","metadata":{"namespace":"default","name":"c"}}`, `{"kind":"ServiceList","items":null}`, `{"kin\u0064":"Pod","metadata":{"name":"p"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cl.Services {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "a,b,c" || len(cl.Slices) != 1 || len(cl.Pods) != 1 {
		t.Errorf("Services %v, %d slices, %d pods; want a,b,c, 1 slice, 1 pod (the slice's targetRef is none)", names, len(cl.Slices), len(cl.Pods))
	}
	// Many objects, so that several workers decode: the error named is the first in order.
	var items []string
	for i := range 1000 {
		items = append(items, svc(fmt.Sprintf("s%d", i)))
	}
	items[300] = `{"kind":"Service","metadata":{"namespace":"default","name":"bad1"},"spec":{"clusterIP":"x"}}`
	items[700] = `{"kind":"Service","metadata":{"namespace":"default","name":"bad2"},"spec":{"ports":"x"}}`
	items[900] = `{"metadata":{}}`
	_, err = DecodeObjects([]byte(list(items...)))
	if want := `document 1, item 301 (Service): Service default/bad1: cluster IP "x"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	items[300] = svc("ok")
	_, err = DecodeObjects([]byte(list(items...)))
	if want := "document 1, item 701 (Service): json: cannot unmarshal"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	for _, tc := range []struct{ doc, want string }{
		{`[1,2]`, "document 1: not a Kubernetes object (not a JSON object)"},
		{`{"kind":3}`, "document 1: kind: not a string"},
		{`{"kind":"List","items":{}}`, "document 1: items is not a list"},
		{list(svc("a"), `{"metadata":{}}`), "document 1, item 2: not a Kubernetes object (no kind)"},
		{list(list(svc("a"), `"x"`)), "document 1, item 1, item 2: not a Kubernetes object"},
		// Not validated as a whole first: what is not decoded is still checked.
		{`{"kind":"List","metadata":{"x":[1,}},"items":[` + svc("a") + `]}`, "document 1: yaml"},
		{list(`{"kind":"ConfigMap","data":{"a":[1,}}}`, svc("a")), "document 1: yaml"},
		{list(`{"kind":"ConfigMapList","metadata":{"a":[1,}}}`, svc("a")), "document 1: yaml"},
		{list(svc("a")) + ` x`, "document 2"},
		{list(`{"kind":"Service","metadata":{"name":"a\u0000"}}`), `item 1 (Service): name "a\x00"`},
	} {
		if _, err := DecodeObjects([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// FuzzObjectHead: on any valid JSON object the scan finds the kind and items encoding/json finds,
// and on any input at all it neither panics nor reads out of bounds.
func FuzzObjectHead(f *testing.F) {
	for _, s := range []string{`{"kind":"List","items":[{"kind":"Pod"}]}`, `{"Kind":"a\"b","items":null}`, `{"items":[1,"]",{"a":[]}],"kind":"x","kind":"y"}`, `{}`, `{"a":{"kind":"no"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, from, to, err := objectHead(data)
		var items []byte
		if err == nil && from >= 0 {
			items = data[from:to]
			_ = EachJSONElement(items, func([]byte) error { return nil })
		}
		if !json.Valid(data) {
			return
		}
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if json.Unmarshal(data, &head) != nil {
			return // not an object, or a kind or items of another type: the scan refuses those too
		}
		if err != nil {
			t.Fatalf("scan refused what encoding/json reads: %v", err)
		}
		if kind != head.Kind {
			t.Fatalf("kind %q, encoding/json %q", kind, head.Kind)
		}
		var got []string
		if err := EachJSONElement(items, func(el []byte) error { got = append(got, string(el)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(head.Items) {
			t.Fatalf("%d items, encoding/json %d", len(got), len(head.Items))
		}
		for i := range got {
			if got[i] != string(head.Items[i]) {
				t.Fatalf("item %d %q, encoding/json %q", i, got[i], head.Items[i])
			}
		}
	})
}
