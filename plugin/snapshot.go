package plugin

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/dataplane/noderun"
	"github.com/svctrace/svctrace/dataplane/snapshot"
	"github.com/svctrace/svctrace/trace"
)

// SnapshotOptions holds everything `snapshot` needs.
type SnapshotOptions struct {
	config    *genericclioptions.ConfigFlags
	streams   genericiooptions.IOStreams
	Input     InputFlags
	conntrack bool
	allNodes  bool
	fleet     fleetFlags
	// dir is where the bundle is written (the argument).
	dir string
}

// NewSnapshotOptions returns snapshot's options with their defaults.
func NewSnapshotOptions(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *SnapshotOptions {
	return &SnapshotOptions{config: cfg, streams: streams, conntrack: true}
}

// NewCmdSnapshot builds `snapshot`.
func NewCmdSnapshot(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := NewSnapshotOptions(streams, cfg)
	cmd := &cobra.Command{
		Use:   "snapshot DIR",
		Short: "Save a node's dataplane and the API objects as a bundle every command reads offline",
		Long: `Write a snapshot bundle: this node's dataplane as kube-proxy programmed it (iptables-save, or
nft -j list ruleset, or for IPVS the iptables rules, ipset save and the IPVS table), the API's
Services, EndpointSlices, Pods and Nodes, optionally conntrack, and a snapshot.yaml naming them.
Any command then reads it with --snapshot DIR, with the same results as on the node: a support
engineer can analyse a customer's node without access to it. With --all-nodes it saves every node
that runs a kube-proxy pod (the API objects once, each node under nodes/NAME): commands read one
with --snapshot DIR --node NAME, and check without --node checks them all.`,
		Example: fmt.Sprintf(`  # On the node, as root
  sudo kubectl-svctrace snapshot /tmp/node1-snapshot

  # Anywhere else
  %[1]s trace default/web --snapshot /tmp/node1-snapshot
  %[1]s check -A --snapshot /tmp/node1-snapshot

  # From a laptop: every node, through its kube-proxy pod; then check them all offline
  %[1]s snapshot /tmp/cluster --all-nodes
  %[1]s check -A --snapshot /tmp/cluster`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("snapshot needs exactly one DIR to write the bundle to")
			}
			return nil
		},
		RunE: runOptions(o),
	}
	o.Input.AddFlags(cmd)
	cmd.Flags().BoolVar(&o.conntrack, "conntrack", o.conntrack, "include `conntrack -L -o extended` (for balance)")
	o.fleet.addFlags(cmd, &o.allNodes, "save")
	return cmd
}

// Complete takes the bundle's directory.
func (o *SnapshotOptions) Complete(args []string) error {
	o.dir = args[0]
	return nil
}

// Validate checks what can be checked before reading anything.
func (o *SnapshotOptions) Validate() error {
	if o.Input.Offline() {
		return usageErrorf("snapshot reads the live node; --dataplane, --snapshot and --demo are for reading bundles")
	}
	if err := o.Input.Validate(); err != nil {
		return err
	}
	return o.fleet.validate(o.allNodes)
}

// Run reads the node (or every node) and writes the bundle.
func (o *SnapshotOptions) Run(ctx context.Context) error {
	dir := o.dir
	if o.allNodes {
		return o.runAllNodes(ctx, dir)
	}
	ctx, in, stop, err := o.Input.start(ctx, o.config, o.streams)
	if err != nil {
		return err
	}
	defer stop()
	var objects []byte
	kpVersion := ""
	if in.Cluster != nil {
		if objects, err = trace.EncodeObjects(in.Cluster); err != nil {
			return err
		}
		kpVersion = nodeKubeProxyVersion(in.Cluster, in.Node.Name)
	}
	files, err := o.writeBundle(ctx, dir, in.Node.Name, in.Dataplane.Mode(), in.Files, in.Runner, objects, kpVersion)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "wrote node %s (%s mode) to %s: %s\n", in.Node.Name, in.Dataplane.Mode(), dir, strings.Join(files, ", "))
	return nil
}

func nodeKubeProxyVersion(cl *trace.Cluster, node string) string {
	if n := cl.Node(node); n != nil {
		//lint:ignore SA1019 deprecated, but some clusters still report it; informational only
		return n.Status.NodeInfo.KubeProxyVersion
	}
	return ""
}

// writeBundle writes one node's bundle into dir: its dumps, the objects when given, conntrack
// (read through r) when asked for, and the manifest. It returns the files written.
func (o *SnapshotOptions) writeBundle(ctx context.Context, dir, node, mode string, dumps map[string]func() []byte, r noderun.Runner, objects []byte, kpVersion string) ([]string, error) {
	if err := snapshot.PrepareDir(dir); err != nil {
		return nil, fmt.Errorf("cannot write the snapshot: %w", err)
	}
	m := snapshot.Manifest{APIVersion: trace.APIVersion, Kind: "Snapshot", Node: node, Mode: mode,
		RecordedBy: "kubectl-svctrace snapshot " + version, KubeProxyVersion: kpVersion}
	names := make([]string, 0, len(dumps))
	for name := range dumps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := snapshot.WriteFile(dir, name, dumps[name]()); err != nil {
			return nil, err
		}
		m.Dataplane = append(m.Dataplane, name)
	}
	if objects != nil {
		if err := snapshot.WriteFile(dir, "objects.json", objects); err != nil {
			return nil, err
		}
		m.Objects = "objects.json"
	}
	if o.conntrack && r != nil {
		out, err := r.Run(ctx, "conntrack", "-L", "-o", "extended")
		if err != nil {
			fmt.Fprintf(o.streams.ErrOut, "warning: node %s: conntrack not saved: %v\n", node, err)
		} else if _, err := conntrack.Parse(out); err == nil {
			if err := snapshot.WriteFile(dir, "conntrack.txt", out); err != nil {
				return nil, err
			}
			m.Conntrack = "conntrack.txt"
		}
	}
	raw, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := snapshot.WriteFile(dir, snapshot.ManifestName, raw); err != nil {
		return nil, err
	}
	files := append([]string{snapshot.ManifestName}, m.Dataplane...)
	if m.Objects != "" {
		files = append(files, m.Objects)
	}
	if m.Conntrack != "" {
		files = append(files, m.Conntrack)
	}
	return files, nil
}

// runAllNodes writes a set: the API objects once, and every node's bundle under nodes/NAME, each
// read through its kube-proxy pod (or a debug pod).
func (o *SnapshotOptions) runAllNodes(ctx context.Context, dir string) error {
	ctx, f, stop, err := openFleet(ctx, o.config, o.streams, o.fleet, &o.Input)
	if err != nil {
		return err
	}
	defer stop()
	if err := snapshot.PrepareDir(dir); err != nil {
		return fmt.Errorf("cannot write the snapshot: %w", err)
	}
	if err := snapshot.PrepareDir(filepath.Join(dir, "nodes")); err != nil {
		return fmt.Errorf("cannot write the snapshot: %w", err)
	}
	objects, err := trace.EncodeObjects(f.cluster)
	if err != nil {
		return err
	}
	if err := snapshot.WriteFile(dir, "objects.json", objects); err != nil {
		return err
	}
	failures := f.each(ctx, "saved", nil, func(ctx context.Context, _ int, name string, r noderun.Runner) error {
		read, err := f.read(ctx, name, r, o.Input.Mode)
		if err != nil {
			return err
		}
		dp, dumps := read.Dataplane, read.Files
		if err := snapshot.ValidName(name); err != nil {
			return err
		}
		_, err = o.writeBundle(ctx, snapshot.NodeDir(dir, name), name, dp.Mode(), dumps, r, nil, nodeKubeProxyVersion(f.cluster, name))
		return err
	})
	bad := f.warn(failures)
	set := snapshot.SetManifest{APIVersion: trace.APIVersion, Kind: snapshot.SetManifestKind, RecordedBy: "kubectl-svctrace snapshot " + version, Objects: "objects.json"}
	for i, name := range f.names {
		if failures[i] == nil {
			set.Nodes = append(set.Nodes, name)
		}
	}
	raw, err := yaml.Marshal(set)
	if err != nil {
		return err
	}
	if err := snapshot.WriteFile(dir, snapshot.ManifestName, raw); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "wrote %d node(s) and the API objects to %s; read one with --snapshot %s --node NAME, or check them all with check -A --snapshot %s\n", len(set.Nodes), dir, dir, dir)
	return f.unreadable(bad)
}
