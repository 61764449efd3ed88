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
func DecodeObjects(data []byte) (*Cluster, error) {
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	var pods []*corev1.Pod
	var nodes []*corev1.Node
	var add func(raw []byte, where string) error
	add = func(raw []byte, where string) error {
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		var err error
		switch {
		case head.Kind == "List" || strings.HasSuffix(head.Kind, "List"):
			for i, it := range head.Items {
				if err := add(it, fmt.Sprintf("%s, item %d", where, i+1)); err != nil {
					return err
				}
			}
		case head.Kind == "Service":
			s := &corev1.Service{}
			err = json.Unmarshal(raw, s)
			svcs = append(svcs, s)
		case head.Kind == "EndpointSlice":
			s := &discoveryv1.EndpointSlice{}
			err = json.Unmarshal(raw, s)
			slices = append(slices, s)
		case head.Kind == "Pod":
			p := &corev1.Pod{}
			err = json.Unmarshal(raw, p)
			pods = append(pods, p)
		case head.Kind == "Node":
			n := &corev1.Node{}
			err = json.Unmarshal(raw, n)
			nodes = append(nodes, n)
		case head.Kind == "":
			return fmt.Errorf("%s: not a Kubernetes object (no kind)", where)
		}
		if err == nil {
			err = validObject(head.Kind, svcs, slices, pods, nodes)
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", where, head.Kind, err)
		}
		return nil
	}
	docs := splitYAML(data)
	for i, doc := range docs {
		raw := doc
		if !json.Valid(doc) {
			var err error
			if raw, err = yaml.YAMLToJSON(doc); err != nil {
				return nil, fmt.Errorf("document %d: %w", i+1, err)
			}
		}
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		if err := add(raw, fmt.Sprintf("document %d", i+1)); err != nil {
			return nil, err
		}
	}
	if len(svcs)+len(slices)+len(pods)+len(nodes) == 0 {
		return nil, fmt.Errorf("no Services, EndpointSlices, Pods or Nodes found")
	}
	return NewCluster(svcs, slices, pods, nodes), nil
}

func splitYAML(data []byte) [][]byte {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		// JSON: one value, or several one after another (outputs of several `kubectl get -o
		// json`). Whatever does not decode is left as it is, for the caller to refuse: never
		// dropped.
		var docs [][]byte
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		for {
			var v json.RawMessage
			err := dec.Decode(&v)
			if err == io.EOF {
				return docs
			}
			if err != nil {
				return append(docs, trimmed[dec.InputOffset():])
			}
			docs = append(docs, v)
		}
	}
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		// A separator line may carry trailing text ("--- # comment").
		if i := bytes.IndexByte(d, '\n'); i >= 0 && bytes.HasPrefix(d, []byte(" ")) {
			d = d[i+1:]
		}
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
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

// validObject checks the values of the object just decoded (the last of its kind) that the engine
// turns into addresses, ports and rule text, as the API server's validation would: a file is
// untrusted, and a value the API server would refuse is refused here with the object named.
func validObject(kind string, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, pods []*corev1.Pod, nodes []*corev1.Node) error {
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
	switch kind {
	case "Service":
		s := svcs[len(svcs)-1]
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
	case "EndpointSlice":
		e := slices[len(slices)-1]
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
	case "Pod":
		p := pods[len(pods)-1]
		for _, a := range p.Status.PodIPs {
			if err := ip("Pod "+p.Namespace+"/"+p.Name+": pod IP", a.IP); err != nil {
				return err
			}
		}
	case "Node":
		n := nodes[len(nodes)-1]
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
