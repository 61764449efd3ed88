package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/svctrace/svctrace/dataplane/conntrack"
	"github.com/svctrace/svctrace/dataplane/snapshot"
	"github.com/svctrace/svctrace/trace"
)

// SnapshotOptions holds everything `snapshot` needs.
type SnapshotOptions struct {
	config    *genericclioptions.ConfigFlags
	streams   genericiooptions.IOStreams
	Input     InputFlags
	conntrack bool
}

// NewCmdSnapshot builds `snapshot`.
func NewCmdSnapshot(streams genericiooptions.IOStreams, cfg *genericclioptions.ConfigFlags) *cobra.Command {
	o := &SnapshotOptions{config: cfg, streams: streams, conntrack: true}
	cmd := &cobra.Command{
		Use:   "snapshot DIR",
		Short: "Save a node's dataplane and the API objects as a bundle every command reads offline",
		Long: `Write a snapshot bundle: this node's dataplane as kube-proxy programmed it (iptables-save, or
nft -j list ruleset, or for IPVS the iptables rules, ipset save and the IPVS table), the API's
Services, EndpointSlices, Pods and Nodes, optionally conntrack, and a snapshot.yaml naming them.
Any command then reads it with --snapshot DIR, with the same results as on the node: a support
engineer can analyse a customer's node without access to it.`,
		Example: fmt.Sprintf(`  # On the node, as root
  sudo kubectl-svctrace snapshot /tmp/node1-snapshot

  # Anywhere else
  %[1]s trace default/web --snapshot /tmp/node1-snapshot
  %[1]s check -A --snapshot /tmp/node1-snapshot`, commandName()),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("snapshot needs exactly one DIR to write the bundle to")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Input.Offline() {
				return usageErrorf("snapshot reads the live node; --dataplane, --snapshot and --demo are for reading bundles")
			}
			return o.Run(cmd.Context(), args[0])
		},
	}
	o.Input.AddFlags(cmd)
	cmd.Flags().BoolVar(&o.conntrack, "conntrack", o.conntrack, "include `conntrack -L -o extended` (for balance)")
	return cmd
}

// Run reads the node and writes the bundle.
func (o *SnapshotOptions) Run(ctx context.Context, dir string) error {
	ctx, in, stop, err := o.Input.start(ctx, o.config, o.streams)
	if err != nil {
		return err
	}
	defer stop()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	m := snapshot.Manifest{APIVersion: trace.APIVersion, Kind: "Snapshot", Node: in.Node.Name, Mode: in.Dataplane.Mode(),
		RecordedBy: "kubectl-svctrace snapshot " + version}
	names := make([]string, 0, len(in.Files))
	for name := range in.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), in.Files[name], 0o644); err != nil {
			return err
		}
		m.Dataplane = append(m.Dataplane, name)
	}
	if in.Cluster != nil {
		data, err := trace.EncodeObjects(in.Cluster)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "objects.json"), data, 0o644); err != nil {
			return err
		}
		m.Objects = "objects.json"
		if n := in.Cluster.Node(in.Node.Name); n != nil {
			//lint:ignore SA1019 deprecated, but some clusters still report it; informational only
			m.KubeProxyVersion = n.Status.NodeInfo.KubeProxyVersion
		}
	}
	if o.conntrack {
		out, err := in.Runner.Run(ctx, "conntrack", "-L", "-o", "extended")
		if err != nil {
			fmt.Fprintf(o.streams.ErrOut, "warning: conntrack not saved: %v\n", err)
		} else if _, err := conntrack.Parse(out); err == nil {
			if err := os.WriteFile(filepath.Join(dir, "conntrack.txt"), out, 0o644); err != nil {
				return err
			}
			m.Conntrack = "conntrack.txt"
		}
	}
	raw, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, snapshot.ManifestName), raw, 0o644); err != nil {
		return err
	}
	files := append([]string{snapshot.ManifestName}, m.Dataplane...)
	if m.Objects != "" {
		files = append(files, m.Objects)
	}
	if m.Conntrack != "" {
		files = append(files, m.Conntrack)
	}
	fmt.Fprintf(o.streams.Out, "wrote node %s (%s mode) to %s: %s\n", m.Node, m.Mode, dir, strings.Join(files, ", "))
	return nil
}
