package plugin

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
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

// completeServices offers NAMESPACE/NAME of the cluster's Services (of -n's namespace when set).
func completeServices(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cs, err := clientFor(cfg)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns := ""
		if cfg.Namespace != nil {
			ns = *cfg.Namespace
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

// completeNodes offers the cluster's node names.
func completeNodes(cfg *genericclioptions.ConfigFlags) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
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

// addCompletion wires the cluster completions into a command that takes a Service.
func addCompletion(cmd *cobra.Command, cfg *genericclioptions.ConfigFlags) {
	cmd.ValidArgsFunction = completeServices(cfg)
	_ = cmd.RegisterFlagCompletionFunc("node", completeNodes(cfg))
	if cmd.Flags().Lookup("port") != nil {
		_ = cmd.RegisterFlagCompletionFunc("port", completePorts(cfg))
	}
}
