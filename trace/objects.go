package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// DecodeObjects reads API objects as `kubectl get svc,endpointslices,pods,nodes -A -o yaml` (or
// -o json) prints them: a List, several YAML documents, or single objects. Kinds other than
// Service, EndpointSlice, Pod and Node are ignored.
//
// A 10,000-Service cluster is some 100,000 objects in one 55 MB List, so the List is not
// unmarshalled: each item's bytes and kind are found by a scan of the List's top level, and the
// items are decoded and validated on all cores. Errors are those of the first bad object in the
// file's order, as a decode one after another would find.
func DecodeObjects(data []byte) (*Cluster, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		// The common case, one `kubectl get -o json`: each object's decoding validates its
		// JSON, and the rest (a List's own fields, objects of other kinds) is validated on its
		// own, so the 55 MB are not validated first as a whole. Anything wrong or unexpected
		// goes the long way below, which names the error.
		if items, err := collectItem(nil, trimmed, "document 1", 0); err == nil {
			if cl, err := decodeItems(items); err == nil {
				return cl, nil
			}
		}
	}
	var items []rawObject
	// A document that is not an object ends the reading, but the objects before it are still
	// decoded: one of them may be the first error.
	for i, doc := range splitYAML(data) {
		raw := doc.text
		if !doc.json {
			var err error
			if raw, err = yaml.YAMLToJSON(raw); err != nil {
				items = append(items, rawObject{fail: fmt.Errorf("document %d: %w", i+1, err)})
				break
			}
		}
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		var err error
		if items, err = collectItem(items, raw, fmt.Sprintf("document %d", i+1), 0); err != nil {
			items = append(items, rawObject{fail: err})
			break
		}
	}
	return decodeItems(items)
}

// decodeItems decodes the objects on all cores and returns them as a Cluster, or the error of
// the first one in order that is refused.
func decodeItems(items []rawObject) (*Cluster, error) {
	decodeAll(items)
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	var pods []*corev1.Pod
	var nodes []*corev1.Node
	for i := range items {
		it := &items[i]
		if it.fail != nil {
			return nil, it.fail
		}
		if it.err != nil {
			return nil, fmt.Errorf("%s (%s): %w", place(it.where, it.item), it.kind, it.err)
		}
		switch o := it.obj.(type) {
		case *corev1.Service:
			svcs = append(svcs, o)
		case *discoveryv1.EndpointSlice:
			slices = append(slices, o)
		case *corev1.Pod:
			pods = append(pods, o)
		case *corev1.Node:
			nodes = append(nodes, o)
		}
	}
	if len(svcs)+len(slices)+len(pods)+len(nodes) == 0 {
		return nil, fmt.Errorf("no Services, EndpointSlices, Pods or Nodes found")
	}
	return NewCluster(svcs, slices, pods, nodes), nil
}

// rawObject is one object of a kind DecodeObjects keeps: its JSON (a slice of the input, not a
// copy), where it is in the file, and once decoded the typed object or why it was refused.
type rawObject struct {
	kind  string
	raw   []byte
	where string // "document 3" or "document 1, item 2" for an item of a List in a List
	item  int    // the item's number in the List at where, or 0
	obj   any
	err   error
	fail  error // not an object: the scan's error, ending the file's objects
}

// collectItem appends the objects of one JSON document or List item (item > 0: the item-th of
// the List at where) to items, the items of a List in order.
func collectItem(items []rawObject, raw []byte, where string, item int) ([]rawObject, error) {
	kind, from, to, err := objectHead(raw)
	if err != nil {
		return items, fmt.Errorf("%s: %w", place(where, item), err)
	}
	var list []byte
	if from >= 0 {
		list = raw[from:to]
	}
	switch {
	case kind == "List" || strings.HasSuffix(kind, "List"):
		// The List's own fields are valid JSON (its items are each checked as they are read).
		own := raw
		if from >= 0 {
			own = append(append(raw[:from:from], "[]"...), raw[to:]...)
		}
		if !json.Valid(own) {
			return items, fmt.Errorf("%s: %w", place(where, item), errScan)
		}
		inner := place(where, item)
		n := 0
		err := EachJSONElement(list, func(el []byte) error {
			n++
			var err error
			items, err = collectItem(items, el, inner, n)
			return err
		})
		if err != nil {
			return items, err
		}
	case kind == "Service" || kind == "EndpointSlice" || kind == "Pod" || kind == "Node":
		// Decoding it checks its JSON.
		items = append(items, rawObject{kind: kind, raw: raw, where: where, item: item})
	case kind == "":
		return items, fmt.Errorf("%s: not a Kubernetes object (no kind)", place(where, item))
	default: // a kind that is not read is still valid JSON
		if !json.Valid(raw) {
			return items, fmt.Errorf("%s: %w", place(where, item), errScan)
		}
	}
	return items, nil
}

// place names an object for errors: "document 1", or "document 1, item 3" for the third item of
// the List there.
func place(where string, item int) string {
	if item > 0 {
		return fmt.Sprintf("%s, item %d", where, item)
	}
	return where
}

// decodeAll decodes and validates every object, on all cores.
func decodeAll(items []rawObject) {
	InParallel(len(items), 64, func(i int) bool {
		decodeOne(&items[i])
		return items[i].err != nil // the objects after a bad one are not used
	})
}

func decodeOne(it *rawObject) {
	switch it.kind {
	default:
		return
	case "Service":
		if s, ok := fastService(it.raw); ok {
			it.obj, it.err = s, validObject(s)
			return
		}
		it.obj = &corev1.Service{}
	case "EndpointSlice":
		if e, ok := fastEndpointSlice(it.raw); ok {
			it.obj, it.err = e, validObject(e)
			return
		}
		it.obj = &discoveryv1.EndpointSlice{}
	case "Pod":
		it.obj = &corev1.Pod{}
	case "Node":
		it.obj = &corev1.Node{}
	}
	if it.err = json.Unmarshal(it.raw, it.obj); it.err == nil {
		it.err = validObject(it.obj)
	}
}

// splitDoc is one document of the input; json when it is known to be valid JSON.
type splitDoc struct {
	text []byte
	json bool
}

func splitYAML(data []byte) []splitDoc {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		if json.Valid(trimmed) { // the common case: one `kubectl get -o json`, not copied
			return []splitDoc{{trimmed, true}}
		}
		// Several JSON values one after another (outputs of several `kubectl get -o json`).
		// Whatever does not decode is left as it is, for the caller to refuse: never dropped.
		var docs []splitDoc
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		for {
			var v json.RawMessage
			err := dec.Decode(&v)
			if err == io.EOF {
				return docs
			}
			if err != nil {
				return append(docs, splitDoc{trimmed[dec.InputOffset():], false})
			}
			docs = append(docs, splitDoc{v, true})
		}
	}
	var docs []splitDoc
	for _, d := range bytes.Split(data, []byte("\n---")) {
		// A separator line may carry trailing text ("--- # comment").
		if i := bytes.IndexByte(d, '\n'); i >= 0 && bytes.HasPrefix(d, []byte(" ")) {
			d = d[i+1:]
		}
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, splitDoc{d, json.Valid(d)})
		}
	}
	return docs
}

// EncodeObjects writes the cluster's objects as a JSON List, kinds and API versions included: what
// DecodeObjects reads (and `kubectl get -o json` prints).
func EncodeObjects(cl *Cluster) ([]byte, error) {
	var items []any
	add := func(kind, apiVersion string, obj any) error {
		raw, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		m["kind"], m["apiVersion"] = kind, apiVersion
		items = append(items, m)
		return nil
	}
	for _, s := range cl.Services {
		if err := add("Service", "v1", s); err != nil {
			return nil, err
		}
	}
	for _, s := range cl.Slices {
		if err := add("EndpointSlice", "discovery.k8s.io/v1", s); err != nil {
			return nil, err
		}
	}
	for _, p := range cl.Pods {
		if err := add("Pod", "v1", p); err != nil {
			return nil, err
		}
	}
	for _, n := range cl.Nodes {
		if err := add("Node", "v1", n); err != nil {
			return nil, err
		}
	}
	return json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// validObject checks the values of a decoded object that the engine turns into addresses, ports
// and rule text, as the API server's validation would: a file is untrusted, and a value the API
// server would refuse is refused here with the object named.
func validObject(obj any) error {
	name := func(ns, n string) error {
		if ns != "" {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("namespace %q: %s", ns, errs[0])
			}
		}
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("name %q: %s", n, errs[0])
		}
		return nil
	}
	ip := func(what, a string) error {
		if _, err := netip.ParseAddr(a); err != nil {
			return fmt.Errorf("%s %q is not an IP address", what, a)
		}
		return nil
	}
	portName := func(who, p string) error {
		if p == "" {
			return nil
		}
		if errs := validation.IsValidPortName(p); len(errs) > 0 {
			return fmt.Errorf("%s: port name %q: %s", who, p, errs[0])
		}
		return nil
	}
	switch o := obj.(type) {
	case *corev1.Service:
		s := o
		who := "Service " + s.Namespace + "/" + s.Name
		if err := name(s.Namespace, s.Name); err != nil {
			return err
		}
		for _, c := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
			if c != "" && c != corev1.ClusterIPNone {
				if err := ip(who+": cluster IP", c); err != nil {
					return err
				}
			}
		}
		for _, e := range s.Spec.ExternalIPs {
			if err := ip(who+": external IP", e); err != nil {
				return err
			}
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				if err := ip(who+": load balancer IP", in.IP); err != nil {
					return err
				}
			}
		}
		for _, r := range s.Spec.LoadBalancerSourceRanges {
			if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
				return fmt.Errorf("%s: loadBalancerSourceRanges %q is not a CIDR", who, r)
			}
		}
		for _, p := range s.Spec.Ports {
			if err := portName(who, p.Name); err != nil {
				return err
			}
			if p.Port < 1 || p.Port > 65535 || p.NodePort < 0 || p.NodePort > 65535 {
				return fmt.Errorf("%s: port %d (node port %d) is not between 1 and 65535", who, p.Port, p.NodePort)
			}
		}
		if hc := s.Spec.HealthCheckNodePort; hc < 0 || hc > 65535 {
			return fmt.Errorf("%s: health check node port %d is not between 1 and 65535", who, hc)
		}
	case *discoveryv1.EndpointSlice:
		e := o
		who := "EndpointSlice " + e.Namespace + "/" + e.Name
		if err := name(e.Namespace, e.Name); err != nil {
			return err
		}
		for _, p := range e.Ports {
			if p.Name != nil {
				if err := portName(who, *p.Name); err != nil {
					return err
				}
			}
			if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
				return fmt.Errorf("%s: port %d is not between 1 and 65535", who, *p.Port)
			}
		}
		for _, ep := range e.Endpoints {
			for _, a := range ep.Addresses {
				if e.AddressType != discoveryv1.AddressTypeFQDN {
					if err := ip(who+": endpoint address", a); err != nil {
						return err
					}
				}
			}
		}
	case *corev1.Pod:
		p := o
		for _, a := range p.Status.PodIPs {
			if err := ip("Pod "+p.Namespace+"/"+p.Name+": pod IP", a.IP); err != nil {
				return err
			}
		}
	case *corev1.Node:
		n := o
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				if err := ip("Node "+n.Name+": address", a.Address); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
