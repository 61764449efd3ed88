// Package snapshot reads and writes snapshot bundles: a directory holding one node's dataplane
// dumps, the API objects, and a snapshot.yaml manifest naming them. Every command accepts a bundle
// offline, and the demo bundle recorded from a real kube-proxy is embedded in the binary.
package snapshot

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"

	"sigs.k8s.io/yaml"
)

// ManifestName is the manifest's file name inside a bundle.
const ManifestName = "snapshot.yaml"

// Manifest describes a bundle.
type Manifest struct {
	APIVersion       string `json:"apiVersion"`
	Kind             string `json:"kind"`
	Node             string `json:"node"`
	Mode             string `json:"mode"`
	KubeProxyVersion string `json:"kubeProxyVersion,omitempty"`
	RecordedBy       string `json:"recordedBy,omitempty"`
	// Dataplane lists dump files (iptables-save text, nft JSON, ...) relative to the bundle.
	Dataplane []string `json:"dataplane"`
	// Objects is the API objects file, relative to the bundle; empty when none was recorded.
	Objects string `json:"objects,omitempty"`
	// Conntrack is `conntrack -L -o extended` of the node, when recorded.
	Conntrack string `json:"conntrack,omitempty"`
}

// Bundle is a loaded snapshot.
type Bundle struct {
	Manifest  Manifest
	Dataplane map[string][]byte
	Objects   []byte
	Conntrack []byte
}

//go:embed demo/snapshot.yaml demo/iptables-save.txt demo/objects.yaml
var demo embed.FS

// Demo returns the embedded demo bundle: the standard e2e scenario as a real kube-proxy v1.36.3
// programmed it (see demo/README.md).
func Demo() (*Bundle, error) {
	sub, err := fs.Sub(demo, "demo")
	if err != nil {
		return nil, err
	}
	return Load(sub)
}

// LoadDir reads a bundle from a directory.
func LoadDir(dir string) (*Bundle, error) {
	b, err := Load(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return b, nil
}

// Load reads a bundle from a file system rooted at the bundle.
func Load(fsys fs.FS) (*Bundle, error) {
	raw, err := fs.ReadFile(fsys, ManifestName)
	if err != nil {
		return nil, fmt.Errorf("no %s: not a svctrace snapshot", ManifestName)
	}
	b := &Bundle{Dataplane: map[string][]byte{}}
	if err := yaml.UnmarshalStrict(raw, &b.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if b.Manifest.Kind != "Snapshot" {
		return nil, fmt.Errorf("%s: kind is %q, want Snapshot", ManifestName, b.Manifest.Kind)
	}
	if len(b.Manifest.Dataplane) == 0 {
		return nil, fmt.Errorf("%s lists no dataplane files", ManifestName)
	}
	for _, f := range b.Manifest.Dataplane {
		data, err := fs.ReadFile(fsys, path.Clean(f))
		if err != nil {
			return nil, fmt.Errorf("dataplane file: %w", err)
		}
		b.Dataplane[f] = data
	}
	if b.Manifest.Objects != "" {
		if b.Objects, err = fs.ReadFile(fsys, path.Clean(b.Manifest.Objects)); err != nil {
			return nil, fmt.Errorf("objects file: %w", err)
		}
	}
	if b.Manifest.Conntrack != "" {
		if b.Conntrack, err = fs.ReadFile(fsys, path.Clean(b.Manifest.Conntrack)); err != nil {
			return nil, fmt.Errorf("conntrack file: %w", err)
		}
	}
	return b, nil
}

// SetManifestKind is the kind of a several-node bundle's top manifest.
const SetManifestKind = "SnapshotSet"

// SetManifest describes a bundle of several nodes: one objects file for all, and a bundle per node
// under nodes/NAME.
type SetManifest struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	RecordedBy string   `json:"recordedBy,omitempty"`
	Nodes      []string `json:"nodes"`
	Objects    string   `json:"objects,omitempty"`
}

// NodeDir is where a set keeps a node's bundle.
func NodeDir(dir, node string) string { return path.Join(dir, "nodes", node) }

// ReadSet reads dir's manifest when it is a several-node set; ok is false for a one-node bundle.
func ReadSet(dir string) (m *SetManifest, ok bool, err error) {
	raw, err := os.ReadFile(path.Join(dir, ManifestName))
	if err != nil {
		return nil, false, fmt.Errorf("snapshot %s: no %s: not a svctrace snapshot", dir, ManifestName)
	}
	var kind struct{ Kind string }
	if err := yaml.Unmarshal(raw, &kind); err != nil || kind.Kind != SetManifestKind {
		return nil, false, nil
	}
	m = &SetManifest{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		return nil, false, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return m, true, nil
}

// LoadNode reads one node of a set, with the set's objects.
func LoadNode(dir string, m *SetManifest, node string) (*Bundle, error) {
	found := false
	for _, n := range m.Nodes {
		found = found || n == node
	}
	if !found {
		return nil, fmt.Errorf("snapshot %s has no node %q (it has %v)", dir, node, m.Nodes)
	}
	b, err := LoadDir(NodeDir(dir, node))
	if err != nil {
		return nil, err
	}
	if m.Objects != "" && b.Objects == nil {
		if b.Objects, err = os.ReadFile(path.Join(dir, path.Clean(m.Objects))); err != nil {
			return nil, fmt.Errorf("snapshot %s: objects file: %w", dir, err)
		}
	}
	return b, nil
}
