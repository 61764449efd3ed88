package plugin

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"
)

// The roles svctrace needs, as krew/rbac/*.yaml ship them (a test keeps the two the same).
var (
	readerRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "nodes"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list"}},
	}
	nodeReaderRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
	}
	debugPodRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create", "get", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
	}
)

// RBACOptions are `rbac`'s flags.
type RBACOptions struct {
	streams                       genericiooptions.IOStreams
	user, group, sa               string
	exec, debugPod                bool
	kubeProxyNS, debugNS, agentNS string
	subject                       rbacv1.Subject
	subjectSuffix                 string
}

// NewCmdRBAC prints the least-privilege RBAC for a user, group or ServiceAccount.
func NewCmdRBAC(streams genericiooptions.IOStreams) *cobra.Command {
	o := &RBACOptions{streams: streams, kubeProxyNS: "kube-system", debugNS: "kube-system", agentNS: "svctrace-system"}
	cmd := &cobra.Command{
		Use:   "rbac (--user USER | --group GROUP | --serviceaccount NAMESPACE:NAME) [--exec] [--debug-pod]",
		Short: "Print the least-privilege RBAC svctrace needs, bound to a user, group or ServiceAccount",
		Long: `Print, as YAML to pipe into kubectl apply, what svctrace needs of the API and nothing more,
bound to one subject:

  always       ClusterRole svctrace-reader: get and list Services, EndpointSlices, Pods and Nodes
               (trace, check, balance, snapshot compare with them; read-only)
  --exec       Role svctrace-node-reader in --kube-proxy-namespace: exec into kube-proxy's pods,
               to read nodes from a laptop (--node). Exec is a powerful right: RBAC cannot narrow
               it to kube-proxy's pods, so its holders may exec into every pod of that namespace.
               The same Role in --agent-namespace, where the svctrace agent runs: a remote trace
               in nftables mode reads only what its packet touches through the agent's binary
  --debug-pod  Role svctrace-debug-pod in --debug-namespace: create, get and delete pods and exec
               into them, for --debug-pod. In kube-system this is as strong as cluster-admin; use a
               namespace of its own (see docs/install.md)

Nothing is applied: the YAML goes to stdout. The same roles are in krew/rbac/ of the source tree.`,
		Example: `  # Let alice trace and check from her laptop, nodes included
  kubectl svctrace rbac --user alice --exec | kubectl apply -f -

  # A CI job's ServiceAccount that runs check --all-nodes
  kubectl svctrace rbac --serviceaccount ci:svctrace --exec > svctrace-rbac.yaml`,
		Args: cobra.NoArgs,
		RunE: runOptions(o),
	}
	fl := cmd.Flags()
	fl.StringVar(&o.user, "user", "", "bind to this user")
	fl.StringVar(&o.group, "group", "", "bind to this group")
	fl.StringVar(&o.sa, "serviceaccount", "", "bind to this ServiceAccount (NAMESPACE:NAME)")
	fl.BoolVar(&o.exec, "exec", false, "also exec into kube-proxy's pods (reading nodes from a laptop)")
	fl.BoolVar(&o.debugPod, "debug-pod", false, "also create debug pods (--debug-pod)")
	fl.StringVar(&o.kubeProxyNS, "kube-proxy-namespace", o.kubeProxyNS, "the namespace of kube-proxy's pods (for --exec)")
	fl.StringVar(&o.debugNS, "debug-namespace", o.debugNS, "the namespace debug pods are created in (for --debug-pod)")
	fl.StringVar(&o.agentNS, "agent-namespace", o.agentNS, "the namespace of the svctrace agent's pods (for --exec)")
	return cmd
}

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	nameSuffix = regexp.MustCompile(`[^a-z0-9-]+`)
)

// Complete turns the subject flag into a subject.
func (o *RBACOptions) Complete([]string) error {
	set := 0
	for _, v := range []string{o.user, o.group, o.sa} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return usageErrorf("rbac binds to one subject: give exactly one of --user, --group or --serviceaccount")
	}
	switch {
	case o.user != "":
		o.subject = rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: o.user}
		o.subjectSuffix = "user-" + o.user
	case o.group != "":
		o.subject = rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: o.group}
		o.subjectSuffix = "group-" + o.group
	default:
		ns, name, ok := strings.Cut(o.sa, ":")
		if !ok || !dnsLabel.MatchString(ns) || !dnsLabel.MatchString(name) {
			return usageErrorf("--serviceaccount %q: use NAMESPACE:NAME", o.sa)
		}
		o.subject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
		o.subjectSuffix = "sa-" + ns + "-" + name
	}
	if strings.ContainsAny(o.subject.Name, "\n\r\x00") || len(o.subject.Name) > 253 {
		return usageErrorf("the subject's name %q is not a name", o.subject.Name)
	}
	for _, ns := range []string{o.kubeProxyNS, o.debugNS, o.agentNS} {
		if !dnsLabel.MatchString(ns) {
			return usageErrorf("namespace %q is not a namespace name", ns)
		}
	}
	o.subjectSuffix = strings.Trim(nameSuffix.ReplaceAllString(strings.ToLower(o.subjectSuffix), "-"), "-")
	if len(o.subjectSuffix) > 200 {
		o.subjectSuffix = o.subjectSuffix[:200]
	}
	return nil
}

// Validate has nothing left to check.
func (o *RBACOptions) Validate() error { return nil }

// Run prints the objects.
func (o *RBACOptions) Run(context.Context) error {
	var docs []any
	bind := func(kind, role, ns string) {
		meta := metav1.ObjectMeta{Name: role + "-" + o.subjectSuffix, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "kubectl-svctrace"}}
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role}
		if kind == "ClusterRole" {
			docs = append(docs, &rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{o.subject}})
			return
		}
		docs = append(docs, &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{o.subject}})
	}
	docs = append(docs, &rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}, ObjectMeta: metav1.ObjectMeta{Name: "svctrace-reader"}, Rules: readerRules})
	bind("ClusterRole", "svctrace-reader", "")
	if o.exec {
		docs = append(docs, &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: metav1.ObjectMeta{Name: "svctrace-node-reader", Namespace: o.kubeProxyNS}, Rules: nodeReaderRules})
		bind("Role", "svctrace-node-reader", o.kubeProxyNS)
		if o.agentNS != o.kubeProxyNS {
			docs = append(docs, &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: metav1.ObjectMeta{Name: "svctrace-node-reader", Namespace: o.agentNS}, Rules: nodeReaderRules})
			bind("Role", "svctrace-node-reader", o.agentNS)
		}
	}
	if o.debugPod {
		docs = append(docs, &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: metav1.ObjectMeta{Name: "svctrace-debug-pod", Namespace: o.debugNS}, Rules: debugPodRules})
		bind("Role", "svctrace-debug-pod", o.debugNS)
	}
	var b strings.Builder
	b.WriteString("# RBAC for kubectl svctrace, printed by `kubectl svctrace rbac`; apply with kubectl apply -f -\n")
	for i, d := range docs {
		out, err := yaml.Marshal(d)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(out)
	}
	_, err := fmt.Fprint(o.streams.Out, b.String())
	return err
}
