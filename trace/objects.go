package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
		return [][]byte{trimmed}
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
