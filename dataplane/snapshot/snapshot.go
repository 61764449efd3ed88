// Package snapshot reads and writes snapshot bundles: a directory holding one node's dataplane
// dumps, the API objects, and a snapshot.yaml manifest naming them. Every command accepts a bundle
// offline, and the demo bundle recorded from a real kube-proxy is embedded in the binary.
package snapshot

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"

	"sigs.k8s.io/yaml"

	"github.com/svctrace/svctrace/dataplane"
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

//go:embed demo/snapshot.yaml demo/iptables-save.txt demo/objects.yaml demo/conntrack.txt
//go:embed demo-nftables/snapshot.yaml demo-nftables/nft.json demo-nftables/objects.yaml demo-nftables/conntrack.txt
//go:embed demo-ipvs/snapshot.yaml demo-ipvs/iptables-save.txt demo-ipvs/ipset-save.txt demo-ipvs/ipvsadm-Sn.txt demo-ipvs/objects.yaml demo-ipvs/conntrack.txt
var demo embed.FS

// DemoModes are the embedded demos, by kube-proxy mode.
var DemoModes = map[string]string{"iptables": "demo", "nftables": "demo-nftables", "ipvs": "demo-ipvs"}

// Demo returns an embedded demo bundle: the standard e2e scenario as a real kube-proxy v1.36.3
// programmed it in that mode (iptables when mode is empty; see demo*/README.md).
func Demo(mode string) (*Bundle, error) {
	if mode == "" {
		mode = "iptables"
	}
	dir, ok := DemoModes[mode]
	if !ok {
		return nil, fmt.Errorf("--demo=%s: the demos are iptables, nftables and ipvs", mode)
	}
	sub, err := fs.Sub(demo, dir)
	if err != nil {
		return nil, err
	}
	return Load(sub)
}

// LoadDir reads a bundle from a directory. Every read stays inside it: a link that leads out is
// refused, and so is anything that is not a regular file or is larger than MaxFileBytes.
func LoadDir(dir string) (*Bundle, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	defer root.Close()
	b, err := Load(root.FS())
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return b, nil
}

// MaxFileBytes bounds one file of a bundle, as any input file (the recorded 10,000-Service
// node's dump is 35 MB).
const MaxFileBytes = dataplane.MaxFileBytes

// readFile reads one file of a bundle: a regular file, within MaxFileBytes, by a relative name
// that stays inside the bundle.
func readFile(fsys fs.FS, name string) ([]byte, error) {
	clean := path.Clean(name)
	if !fs.ValidPath(clean) || clean == "." {
		return nil, fmt.Errorf("%q is not a file name inside the snapshot", name)
	}
	fi, err := fs.Stat(fsys, clean)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		// Checked before opening: opening a FIFO for reading blocks.
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	f, err := fsys.Open(clean)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return dataplane.ReadOpened(f, name, MaxFileBytes)
}

// Load reads a bundle from a file system rooted at the bundle.
func Load(fsys fs.FS) (*Bundle, error) {
	raw, err := readFile(fsys, ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s: not a svctrace snapshot", ManifestName)
	} else if err != nil {
		return nil, err
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
	if b.Manifest.Node != "" {
		if err := ValidName(b.Manifest.Node); err != nil {
			return nil, fmt.Errorf("%s: %w", ManifestName, err)
		}
	}
	switch b.Manifest.Mode {
	case "", "iptables", "nftables", "ipvs":
	default:
		return nil, fmt.Errorf("%s: mode %q is not iptables, nftables or ipvs", ManifestName, b.Manifest.Mode)
	}
	for _, f := range b.Manifest.Dataplane {
		data, err := readFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("dataplane file: %w", err)
		}
		b.Dataplane[f] = data
	}
	if b.Manifest.Objects != "" {
		if b.Objects, err = readFile(fsys, b.Manifest.Objects); err != nil {
			return nil, fmt.Errorf("objects file: %w", err)
		}
	}
	if b.Manifest.Conntrack != "" {
		if b.Conntrack, err = readFile(fsys, b.Manifest.Conntrack); err != nil {
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
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, false, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	defer root.Close()
	raw, err := readFile(root.FS(), ManifestName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("snapshot %s: no %s: not a svctrace snapshot", dir, ManifestName)
	} else if err != nil {
		return nil, false, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	var kind struct{ Kind string }
	if err := yaml.Unmarshal(raw, &kind); err != nil || kind.Kind != SetManifestKind {
		return nil, false, nil
	}
	m = &SetManifest{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		return nil, false, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	for _, n := range m.Nodes {
		if err := ValidName(n); err != nil {
			return nil, false, fmt.Errorf("snapshot %s: %w", dir, err)
		}
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
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", dir, err)
		}
		defer root.Close()
		if b.Objects, err = readFile(root.FS(), m.Objects); err != nil {
			return nil, fmt.Errorf("snapshot %s: objects file: %w", dir, err)
		}
	}
	return b, nil
}

// nodeName is a Node object's name: a DNS subdomain (it becomes a directory name in a set).
var nodeName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ValidName checks a node name that becomes a directory of a set.
func ValidName(n string) error {
	if len(n) == 0 || len(n) > 253 || !nodeName.MatchString(n) {
		return fmt.Errorf("node name %q is not a valid Kubernetes node name", n)
	}
	return nil
}

// PrepareDir makes dir ready to hold a bundle: created 0700 when missing; an existing one must be
// a directory (not a link to one) that is empty or already a snapshot, so that saving never
// writes into a directory of something else.
func PrepareDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory (a link is not followed)", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == ManifestName {
			return nil
		}
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty and not a snapshot: choose a new directory", dir)
	}
	return nil
}

// WriteFile writes one file of a bundle in dir, 0600 (snapshots hold Pod specs, environment
// values included). It never writes through a link: an existing regular file is replaced, any
// other kind of file is refused.
func WriteFile(dir, name string, data []byte) error {
	if name != path.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("%q is not a file name", name)
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Lstat(p); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s exists and is not a regular file (a link is not followed)", p)
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
