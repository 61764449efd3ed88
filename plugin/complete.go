package plugin

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/svctrace/svctrace/dataplane/snapshot"
	"github.com/svctrace/svctrace/trace"
)

// Shell completion from the cluster: kubectl runs kubectl_complete-svctrace (shipped next to the
// plugin), which asks this binary's `__complete`.

func clientFor(cfg *genericclioptions.ConfigFlags) (kubernetes.Interface, error) {
	rc, err := cfg.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	rc.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(rc)
}

// offlineObjects are the API objects of the command line's --demo or --snapshot (a one-node
// bundle), so that completion offers what the command will read; nil for live input.
func offlineObjects(cmd *cobra.Command) *trace.Cluster {
	var b *snapshot.Bundle
	var err error
	if mode, _ := cmd.Flags().GetString("demo"); mode != "" {
		b, err = snapshot.Demo(mode)
	} else if dir, _ := cmd.Flags().GetString("snapshot"); dir != "" {
		b, err = snapshot.LoadDir(dir)
	} else {
		return nil
	}
	if err != nil || len(b.Objects) == 0 {
		return nil
	}
	cl, err := trace.DecodeObjects(b.Objects)
	if err != nil {
		return nil
	}
	return cl
}

// completeServices offers NAMESPACE/NAME of the Services (of -n's namespace when set): those of
// --demo or --snapshot, else the cluster's.
func completeServices(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns := ""
		if cfg.Namespace != nil {
			ns = *cfg.Namespace
		}
		if cl := offlineObjects(cmd); cl != nil {
			var out []cobra.Completion
			for _, s := range cl.Services {
				name := s.Namespace + "/" + s.Name
				if ns != "" {
					if s.Namespace != ns {
						continue
					}
					name = s.Name
				}
				if strings.HasPrefix(name, toComplete) {
					out = append(out, name)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		cs, err := clientFor(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := cs.CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range list.Items {
			name := s.Namespace + "/" + s.Name
			if ns != "" {
				name = s.Name
			}
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNodes offers the node names: --demo's or --snapshot's, else the cluster's.
func completeNodes(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if cl := offlineObjects(cmd); cl != nil {
			var out []cobra.Completion
			for _, n := range cl.Nodes {
				if strings.HasPrefix(n.Name, toComplete) {
					out = append(out, n.Name)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		cs, err := clientFor(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range list.Items {
			if strings.HasPrefix(n.Name, toComplete) {
				out = append(out, n.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePorts offers the port names and numbers of the Service named in the arguments.
func completePorts(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, name, ok := strings.Cut(args[0], "/")
		if !ok {
			ns, name = "default", args[0]
			if cfg.Namespace != nil && *cfg.Namespace != "" {
				ns = *cfg.Namespace
			}
		}
		cs, err := clientFor(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		svc, err := cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, p := range svc.Spec.Ports {
			for _, c := range []string{p.Name, strconv.Itoa(int(p.Port))} {
				if c != "" && strings.HasPrefix(c, toComplete) {
					out = append(out, c)
				}
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// fixed offers a flag's fixed values; after a value that wants more ("jsonpath=") no space.
func fixed(values ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		d := cobra.ShellCompDirectiveNoFileComp
		for _, v := range values {
			if strings.HasPrefix(v, toComplete) {
				out = append(out, v)
				if strings.HasSuffix(v, "=") {
					d |= cobra.ShellCompDirectiveNoSpace
				}
			}
		}
		return out, d
	}
}

// completeFrom offers --from's kinds and, from the API, pod/NAMESPACE/NAME.
func completeFrom(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		out, _ := fixed("pod", "node", "external")(cmd, args, toComplete)
		if !strings.HasPrefix(toComplete, "pod/") {
			if strings.HasPrefix("pod/", toComplete) {
				out = append(out, "pod/")
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		var pods []cobra.Completion
		if cl := offlineObjects(cmd); cl != nil {
			for _, p := range cl.Pods {
				pods = append(pods, "pod/"+p.Namespace+"/"+p.Name)
			}
		} else if cs, err := clientFor(cfg); err == nil {
			if list, err := cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, p := range list.Items {
					pods = append(pods, "pod/"+p.Namespace+"/"+p.Name)
				}
			}
		}
		for _, p := range pods {
			if strings.HasPrefix(p, toComplete) {
				out = append(out, p)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeNamespaces offers the cluster's namespaces (or --demo's and --snapshot's).
func completeNamespaces(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		seen := map[string]bool{}
		if cl := offlineObjects(cmd); cl != nil {
			for _, s := range cl.Services {
				seen[s.Namespace] = true
			}
		} else if cs, err := clientFor(cfg); err == nil {
			if list, err := cs.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, n := range list.Items {
					seen[n.Name] = true
				}
			}
		}
		var out []cobra.Completion
		for n := range seen {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeContexts offers the kubeconfig's contexts.
func completeContexts(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		raw, err := cfg.ToRawKubeConfigLoader().RawConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for name := range raw.Contexts {
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// outputFormats are each command's -o values, as completion offers them.
var outputFormats = map[string][]string{
	"trace":   {"tree", "wide", "json", "yaml", "jsonpath=", "go-template=", "mermaid", "dot"},
	"check":   {"table", "wide", "json", "yaml", "junit", "jsonpath=", "go-template="},
	"balance": {"table", "wide", "json", "yaml", "jsonpath=", "go-template="},
	"repair":  {"table", "wide", "json", "yaml", "jsonpath=", "go-template="},
}

// addCompletion wires completions into a command that takes a Service: the Service and its
// ports, nodes, namespaces and contexts from the cluster (or --demo, --snapshot), and every
// flag with fixed values.
func addCompletion(cmd *cobra.Command, cfg *genericclioptions.ConfigFlags) {
	cmd.ValidArgsFunction = completeServices(cfg)
	register := func(flag string, f cobra.CompletionFunc) {
		if cmd.Flags().Lookup(flag) != nil {
			_ = cmd.RegisterFlagCompletionFunc(flag, f)
		}
	}
	register("node", completeNodes(cfg))
	register("port", completePorts(cfg))
	register("output", fixed(outputFormats[cmd.Name()]...))
	register("protocol", fixed("tcp", "udp", "sctp"))
	register("mode", fixed("iptables", "nftables", "ipvs"))
	register("fail-on", fixed("error", "warning", "info", "none"))
	register("from", completeFrom(cfg))
}

// addRootCompletion completes the kubectl flags every command shares: -n and --context.
func addRootCompletion(root *cobra.Command, cfg *genericclioptions.ConfigFlags) {
	_ = root.RegisterFlagCompletionFunc("namespace", completeNamespaces(cfg))
	_ = root.RegisterFlagCompletionFunc("context", completeContexts(cfg))
}
