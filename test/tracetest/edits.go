package tracetest

import (
	"encoding/json"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/svctrace/svctrace/trace"
)

// EditEndpoints rewrites the addresses of a Service's EndpointSlices (any namespace): an address
// that is a key of change becomes its value, or goes when the value is "". It returns the objects
// indexed anew.
func EditEndpoints(cl *trace.Cluster, service string, change map[string]string) *trace.Cluster {
	for _, sl := range cl.Slices {
		if sl.Labels["kubernetes.io/service-name"] != service {
			continue
		}
		kept := sl.Endpoints[:0]
		for _, e := range sl.Endpoints {
			if to, ok := change[e.Addresses[0]]; ok {
				if to == "" {
					continue
				}
				e.Addresses[0] = to
			}
			kept = append(kept, e)
		}
		sl.Endpoints = kept
	}
	return trace.NewCluster(cl.Services, cl.Slices, cl.Pods, cl.Nodes)
}

// WithoutService returns the objects without the named Service (its EndpointSlices stay, as they
// do until the controller removes them).
func WithoutService(cl *trace.Cluster, name string) *trace.Cluster {
	var svcs []*corev1.Service
	for _, s := range cl.Services {
		if s.Name != name {
			svcs = append(svcs, s)
		}
	}
	return trace.NewCluster(svcs, cl.Slices, cl.Pods, cl.Nodes)
}

// StaleDemo reads the demo's API objects (dir: dataplane/snapshot/demo, relative to the test) as
// the API looks once it has moved on from what the recorded node programmed: hostnames-c
// (10.244.1.13) replaced by a new pod (10.244.1.15), and the multi Service deleted.
func StaleDemo(t testing.TB, dir string) *trace.Cluster {
	t.Helper()
	cl := LoadObjects(t, dir+"/objects.yaml")
	cl = EditEndpoints(cl, "hostnames", map[string]string{"10.244.1.13": "10.244.1.15"})
	return WithoutService(cl, "multi")
}

// NftDump is a recorded `nft -j list ruleset`, decoded into generic objects for tests that edit
// it (add counters, grow a map) and encode it again with Encode.
type NftDump struct {
	Nftables []map[string]any `json:"nftables"`
}

// ReadNftDump reads and decodes the nft JSON at path.
func ReadNftDump(t testing.TB, path string) *NftDump {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d NftDump
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// Encode is the dump as nft -j prints it again.
func (d *NftDump) Encode(t testing.TB) []byte {
	t.Helper()
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
